# The two commands of the README. Both set up first (scripts/setup.sh is idempotent).
#   make app               the desktop app on camera 0 (on demo when there is no camera)
#   make app SOURCE=demo   ... on another source
#   make test              the whole test suite
#   make bundle            the desktop bundle in dist/vrfer/ (PyInstaller, packaging/vrfer.spec)
.PHONY: setup app test bundle

VENV := .venv
SOURCE ?=
# No camera device: start on the demo; otherwise let the app choose (its last source, else camera 0).
APP_SOURCE := $(if $(SOURCE),$(SOURCE),$(if $(wildcard /dev/video0),,demo))

setup:
	bash scripts/setup.sh

app: setup
	$(VENV)/bin/vrfer app $(if $(APP_SOURCE),--source $(APP_SOURCE))

test: setup
	$(VENV)/bin/python -m pytest -q

bundle: setup
	$(VENV)/bin/pyinstaller --noconfirm packaging/vrfer.spec
