# Mount helpers shared by setup.sh and with-monado.sh (sourced, not run).
# /dev and /sys are recursive binds made rslave, so unmounting them inside ROOT can never
# propagate back and unmount the host's own /dev/pts or /dev/shm.

mount_system() {  # ROOT
  local root=$1
  mountpoint -q "$root/proc" || mount -t proc proc "$root/proc"
  if ! mountpoint -q "$root/dev"; then
    mount --rbind /dev "$root/dev"; mount --make-rslave "$root/dev"
  fi
  if ! mountpoint -q "$root/sys"; then
    mount --rbind /sys "$root/sys"; mount --make-rslave "$root/sys"
  fi
}

unmount_all() {  # ROOT: every mount under ROOT, deepest first
  local root=$1 m
  for m in $(awk -v r="$root/" 'index($2, r) == 1 {print $2}' /proc/mounts | sort -r); do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
  done
}
