/* vrfer's implicit OpenXR API layer: XR_FB_face_tracking2 (and XR_HTC_facial_tracking, lip
 * only) for any OpenXR application, served from the face-weights block that vrfer publishes
 * (core/avatar/face_ipc.py holds the layout; this file must agree with it).
 *
 * Every call the layer does not own goes straight to the next layer or the runtime: the
 * layer's xrGetInstanceProcAddr hands out the next function pointer itself, so a pass-through
 * call costs nothing extra.
 *
 * Reading never blocks and never trusts the block: it is read with pread() into a private
 * copy (a truncated or replaced file cannot fault the game as a mapping could), the seqlock is
 * retried a bounded number of times, an unknown magic/version/count is refused once with one
 * line on stderr, and non-finite or out-of-range values are clamped to 0..1.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define XR_USE_TIMESPEC 1
#include <openxr/openxr.h>
#include <openxr/openxr_platform.h>
#include <openxr/openxr_loader_negotiation.h>

#define LAYER_NAME "XR_APILAYER_VRFER_face_tracking"
#define EXPORT __attribute__((visibility("default")))

/* ---- the shared block (face_ipc.py) ------------------------------------------------------ */
static const char BLOCK_MAGIC[8] = {'V', 'R', 'F', 'E', 'R', 'F', 'C', 0};
#define BLOCK_VERSION 1u
#define BLOCK_WEIGHTS 70u
#define BLOCK_CONFIDENCES 2u
#define BLOCK_SIZE 320
#define BLOCK_SEQ_OFFSET 16
#define BLOCK_FLAG_VALID 1u
#define SEQ_TRIES 32          /* a writer mid-update is retried this often, then the read gives up */
#define REOPEN_NS 200000000LL /* a missing or stale block is looked up again at most every 0.2 s */
#define DEFAULT_MAX_AGE_MS 500

struct block {
    char magic[8];
    uint32_t version, weight_count, seq, flags;
    uint64_t time_ns;
    float confidence[BLOCK_CONFIDENCES];
    float weights[BLOCK_WEIGHTS];
};
_Static_assert(sizeof(struct block) == BLOCK_SIZE, "face block layout");
_Static_assert(XR_FACE_EXPRESSION2_COUNT_FB == BLOCK_WEIGHTS, "XrFaceExpression2FB order");

enum frame_state { FRAME_OK, FRAME_ABSENT, FRAME_STALE, FRAME_BUSY, FRAME_REFUSED };

struct reader {
    pthread_mutex_t lock;
    char path[512];
    int fd;
    dev_t dev;
    ino_t ino;
    int64_t next_open_ns;
    int64_t max_age_ns;
    int refused_said;
    int have_last;
    struct block last; /* the newest good copy of the file held */
};

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void reader_init(struct reader *r) {
    pthread_mutex_init(&r->lock, NULL);
    const char *env = getenv("VRFER_FACE_SHM");
    if (env && *env) {
        snprintf(r->path, sizeof r->path, "%s", env);
    } else {
        struct stat st;
        const char *dir = (stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode)) ? "/dev/shm"
                          : (getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
        snprintf(r->path, sizeof r->path, "%s/vrfer-face-%u", dir, (unsigned)getuid());
    }
    const char *age = getenv("VRFER_FACE_MAX_AGE_MS");
    long ms = age ? strtol(age, NULL, 10) : DEFAULT_MAX_AGE_MS;
    r->max_age_ns = (ms > 0 ? ms : DEFAULT_MAX_AGE_MS) * 1000000LL;
    r->fd = -1;
    r->next_open_ns = 0;
    r->refused_said = 0;
    r->have_last = 0;
}

static void reader_close(struct reader *r) {
    if (r->fd >= 0) close(r->fd);
    r->fd = -1;
    pthread_mutex_destroy(&r->lock);
}

/* (Re)open the path if it names a different file than the one held; 1 if the file changed.
 * Only regular files of at least BLOCK_SIZE bytes are accepted: a FIFO or device there could
 * block or lie. */
static int reader_reopen(struct reader *r, int64_t now) {
    if (now < r->next_open_ns) return 0;
    r->next_open_ns = now + REOPEN_NS;
    int fd = open(r->path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0) {
        if (r->fd >= 0) close(r->fd);  /* vrfer exited: the old copy only grows stale */
        r->fd = -1;
        r->have_last = 0;
        return 0;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size < BLOCK_SIZE) {
        close(fd);
        return 0;
    }
    if (r->fd >= 0 && st.st_dev == r->dev && st.st_ino == r->ino) {
        close(fd);
        return 0;
    }
    if (r->fd >= 0) close(r->fd);
    r->fd = fd;
    r->dev = st.st_dev;
    r->ino = st.st_ino;
    r->refused_said = 0;
    r->have_last = 0;
    return 1;
}

static float clamp01(float v) { return (v >= 0.0f && v <= 1.0f) ? v : (v > 1.0f ? 1.0f : 0.0f); } /* NaN -> 0 */

/* One consistent copy of the block: seq, block, seq again (three reads, so the kernel's copy
 * order cannot matter). */
static enum frame_state read_once(struct reader *r, struct block *out) {
    for (int i = 0; i < SEQ_TRIES; i++) {
        uint32_t s1, s2;
        if (pread(r->fd, &s1, 4, BLOCK_SEQ_OFFSET) != 4) return FRAME_ABSENT;
        if (s1 & 1u) continue;
        if (pread(r->fd, out, BLOCK_SIZE, 0) != BLOCK_SIZE) return FRAME_ABSENT;
        if (pread(r->fd, &s2, 4, BLOCK_SEQ_OFFSET) != 4) return FRAME_ABSENT;
        if (s1 == s2 && out->seq == s1) return FRAME_OK;
    }
    return FRAME_BUSY;
}

/* One copy checked and cleaned. A writer caught mid-update (vrfer's Python thread can be
 * preempted there for milliseconds) yields the last good copy instead, so a game does not see
 * a spurious lost face; its age is judged like any other. */
static enum frame_state read_checked(struct reader *r, struct block *out) {
    enum frame_state s = read_once(r, out);
    if (s == FRAME_BUSY && r->have_last) {
        *out = r->last;
        return FRAME_OK;
    }
    if (s != FRAME_OK) return s;
    if (memcmp(out->magic, BLOCK_MAGIC, 8) != 0 || out->version != BLOCK_VERSION || out->weight_count != BLOCK_WEIGHTS) {
        if (!r->refused_said) {
            fprintf(stderr, "vrfer face layer: %s has an unknown layout (version %u, %u weights); "
                    "this layer reads version %u with %u weights: weights marked invalid\n",
                    r->path, out->version, out->weight_count, BLOCK_VERSION, BLOCK_WEIGHTS);
            r->refused_said = 1;
        }
        r->have_last = 0;
        return FRAME_REFUSED;
    }
    for (unsigned i = 0; i < BLOCK_WEIGHTS; i++) out->weights[i] = clamp01(out->weights[i]);
    for (unsigned i = 0; i < BLOCK_CONFIDENCES; i++) out->confidence[i] = clamp01(out->confidence[i]);
    r->last = *out;
    r->have_last = 1;
    return FRAME_OK;
}

static int too_old(const struct reader *r, const struct block *b, int64_t now) {
    return (int64_t)(now - (int64_t)b->time_ns) > r->max_age_ns;
}

static enum frame_state reader_read(struct reader *r, struct block *out) {
    int64_t now = now_ns();
    if (r->fd < 0) reader_reopen(r, now);
    if (r->fd < 0) return FRAME_ABSENT;
    enum frame_state s = read_checked(r, out);
    if (s == FRAME_OK && too_old(r, out, now)) {
        /* vrfer may have restarted with a new block: look again, then judge the fresh copy */
        if (reader_reopen(r, now)) s = read_checked(r, out);
        if (r->fd < 0) return FRAME_ABSENT;
        if (s == FRAME_OK && too_old(r, out, now)) s = FRAME_STALE;
    }
    return s;
}

/* ---- instances -------------------------------------------------------------------------- */
#define MAX_INSTANCES 8

struct instance {
    XrInstance handle;
    PFN_xrGetInstanceProcAddr next_gipa;
    PFN_xrDestroyInstance next_destroy;
    PFN_xrGetSystemProperties next_system_properties;
    PFN_xrConvertTimespecTimeToTimeKHR next_convert; /* NULL: the runtime lacks it */
    int fb, htc;                                     /* which of our extensions the app enabled */
};

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static struct instance g_instances[MAX_INSTANCES];

static struct instance *find_instance(XrInstance h) {
    for (int i = 0; i < MAX_INSTANCES; i++)
        if (g_instances[i].handle != XR_NULL_HANDLE && g_instances[i].handle == h) return &g_instances[i];
    return NULL;
}

/* The loader allows one XrInstance per process; trackers (created from a session, which does
 * not name its instance) take the newest instance that enabled the extension. */
static struct instance *instance_with(int fb) {
    for (int i = MAX_INSTANCES - 1; i >= 0; i--)
        if (g_instances[i].handle != XR_NULL_HANDLE && (fb ? g_instances[i].fb : g_instances[i].htc))
            return &g_instances[i];
    return NULL;
}

static const XrExtensionProperties OUR_EXTENSIONS[] = {
    {XR_TYPE_EXTENSION_PROPERTIES, NULL, XR_FB_FACE_TRACKING2_EXTENSION_NAME, XR_FB_face_tracking2_SPEC_VERSION},
    {XR_TYPE_EXTENSION_PROPERTIES, NULL, XR_HTC_FACIAL_TRACKING_EXTENSION_NAME, XR_HTC_facial_tracking_SPEC_VERSION},
};
#define N_OUR_EXTENSIONS (sizeof OUR_EXTENSIONS / sizeof OUR_EXTENSIONS[0])

/* ---- trackers ---------------------------------------------------------------------------- */
#define TRACKER_MAGIC 0x76726665u /* "vrfe": a handle we made */

struct tracker {
    uint32_t magic;
    int kind; /* 0: FB face tracker; 1: HTC lip tracker */
    struct instance *instance;
    struct reader reader;
    struct tracker *next;
};

static struct tracker *g_trackers;

static struct tracker *tracker_new(int kind) {
    struct tracker *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->magic = TRACKER_MAGIC;
    t->kind = kind;
    reader_init(&t->reader);
    pthread_mutex_lock(&g_lock);
    t->instance = instance_with(kind == 0);
    t->next = g_trackers;
    g_trackers = t;
    pthread_mutex_unlock(&g_lock);
    return t;
}

/* A handle is ours only if it is on the live list: a stale or foreign handle is never read. */
static struct tracker *tracker_get(uint64_t h, int kind) {
    pthread_mutex_lock(&g_lock);
    struct tracker *t = g_trackers;
    while (t && (uint64_t)(uintptr_t)t != h) t = t->next;
    pthread_mutex_unlock(&g_lock);
    return (t && t->magic == TRACKER_MAGIC && t->kind == kind) ? t : NULL;
}

static XrResult tracker_destroy(uint64_t h, int kind) {
    pthread_mutex_lock(&g_lock);
    struct tracker **pp = &g_trackers;
    while (*pp && (uint64_t)(uintptr_t)*pp != h) pp = &(*pp)->next;
    struct tracker *t = *pp;
    if (!t || t->kind != kind) {
        pthread_mutex_unlock(&g_lock);
        return XR_ERROR_HANDLE_INVALID;
    }
    *pp = t->next;
    pthread_mutex_unlock(&g_lock);
    t->magic = 0;
    reader_close(&t->reader);
    free(t);
    return XR_SUCCESS;
}

/* The block's CLOCK_MONOTONIC stamp in the runtime's XrTime; the app's own time if unknown. */
static XrTime to_xr_time(struct instance *inst, uint64_t ns, XrTime fallback) {
    if (!inst || !inst->next_convert) return fallback;
    struct timespec ts = {(time_t)(ns / 1000000000ull), (long)(ns % 1000000000ull)};
    XrTime t;
    return inst->next_convert(inst->handle, &ts, &t) == XR_SUCCESS ? t : fallback;
}

/* ---- XR_FB_face_tracking2 ---------------------------------------------------------------- */
static XRAPI_ATTR XrResult XRAPI_CALL layer_xrCreateFaceTracker2FB(XrSession session,
        const XrFaceTrackerCreateInfo2FB *info, XrFaceTracker2FB *tracker) {
    if (session == XR_NULL_HANDLE) return XR_ERROR_HANDLE_INVALID;
    if (!info || !tracker || info->type != XR_TYPE_FACE_TRACKER_CREATE_INFO2_FB) return XR_ERROR_VALIDATION_FAILURE;
    if (info->faceExpressionSet != XR_FACE_EXPRESSION_SET2_DEFAULT_FB) return XR_ERROR_VALIDATION_FAILURE;
    if (info->requestedDataSourceCount && !info->requestedDataSources) return XR_ERROR_VALIDATION_FAILURE;
    int visual = info->requestedDataSourceCount == 0;
    for (uint32_t i = 0; i < info->requestedDataSourceCount; i++)
        visual |= info->requestedDataSources[i] == XR_FACE_TRACKING_DATA_SOURCE2_VISUAL_FB;
    if (!visual) return XR_ERROR_FEATURE_UNSUPPORTED; /* audio-driven tracking is not offered */
    struct tracker *t = tracker_new(0);
    if (!t) return XR_ERROR_OUT_OF_MEMORY;
    *tracker = (XrFaceTracker2FB)(uintptr_t)t;
    return XR_SUCCESS;
}

static XRAPI_ATTR XrResult XRAPI_CALL layer_xrDestroyFaceTracker2FB(XrFaceTracker2FB tracker) {
    return tracker_destroy((uint64_t)(uintptr_t)tracker, 0);
}

static XRAPI_ATTR XrResult XRAPI_CALL layer_xrGetFaceExpressionWeights2FB(XrFaceTracker2FB tracker,
        const XrFaceExpressionInfo2FB *info, XrFaceExpressionWeights2FB *out) {
    struct tracker *t = tracker_get((uint64_t)(uintptr_t)tracker, 0);
    if (!t) return XR_ERROR_HANDLE_INVALID;
    if (!info || !out || info->type != XR_TYPE_FACE_EXPRESSION_INFO2_FB ||
        out->type != XR_TYPE_FACE_EXPRESSION_WEIGHTS2_FB)
        return XR_ERROR_VALIDATION_FAILURE;
    if (out->weightCount != XR_FACE_EXPRESSION2_COUNT_FB || !out->weights ||
        out->confidenceCount != XR_FACE_CONFIDENCE2_COUNT_FB || !out->confidences)
        return XR_ERROR_VALIDATION_FAILURE;
    if (info->time <= 0) return XR_ERROR_TIME_INVALID;
    struct block b;
    pthread_mutex_lock(&t->reader.lock);
    enum frame_state s = reader_read(&t->reader, &b);
    pthread_mutex_unlock(&t->reader.lock);
    out->isEyeFollowingBlendshapesValid = XR_FALSE;
    out->dataSource = XR_FACE_TRACKING_DATA_SOURCE2_VISUAL_FB;
    if (s == FRAME_OK) {
        /* a fresh block that vrfer marks invalid (no face, user away) still carries its
         * relaxing away pose, which is what an avatar should show */
        memcpy(out->weights, b.weights, sizeof b.weights);
        memcpy(out->confidences, b.confidence, sizeof b.confidence);
        out->isValid = (b.flags & BLOCK_FLAG_VALID) ? XR_TRUE : XR_FALSE;
        out->time = to_xr_time(t->instance, b.time_ns, info->time);
    } else {
        memset(out->weights, 0, sizeof(float) * XR_FACE_EXPRESSION2_COUNT_FB);
        memset(out->confidences, 0, sizeof(float) * XR_FACE_CONFIDENCE2_COUNT_FB);
        out->isValid = XR_FALSE;
        out->time = info->time;
    }
    return XR_SUCCESS;
}

/* ---- XR_HTC_facial_tracking (lip only) --------------------------------------------------- */
/* Each lip expression is the mean of up to two XrFaceExpression2FB weights; -1: none. */
static const int8_t HTC_LIP_FROM_FB[XR_FACIAL_EXPRESSION_LIP_COUNT_HTC][2] = {
    [XR_LIP_EXPRESSION_JAW_RIGHT_HTC] = {XR_FACE_EXPRESSION2_JAW_SIDEWAYS_RIGHT_FB, -1},
    [XR_LIP_EXPRESSION_JAW_LEFT_HTC] = {XR_FACE_EXPRESSION2_JAW_SIDEWAYS_LEFT_FB, -1},
    [XR_LIP_EXPRESSION_JAW_FORWARD_HTC] = {XR_FACE_EXPRESSION2_JAW_THRUST_FB, -1},
    [XR_LIP_EXPRESSION_JAW_OPEN_HTC] = {XR_FACE_EXPRESSION2_JAW_DROP_FB, -1},
    [XR_LIP_EXPRESSION_MOUTH_APE_SHAPE_HTC] = {-1, -1},
    [XR_LIP_EXPRESSION_MOUTH_UPPER_RIGHT_HTC] = {XR_FACE_EXPRESSION2_MOUTH_RIGHT_FB, -1},
    [XR_LIP_EXPRESSION_MOUTH_UPPER_LEFT_HTC] = {XR_FACE_EXPRESSION2_MOUTH_LEFT_FB, -1},
    [XR_LIP_EXPRESSION_MOUTH_LOWER_RIGHT_HTC] = {XR_FACE_EXPRESSION2_MOUTH_RIGHT_FB, -1},
    [XR_LIP_EXPRESSION_MOUTH_LOWER_LEFT_HTC] = {XR_FACE_EXPRESSION2_MOUTH_LEFT_FB, -1},
    [XR_LIP_EXPRESSION_MOUTH_UPPER_OVERTURN_HTC] = {XR_FACE_EXPRESSION2_LIP_FUNNELER_LT_FB, XR_FACE_EXPRESSION2_LIP_FUNNELER_RT_FB},
    [XR_LIP_EXPRESSION_MOUTH_LOWER_OVERTURN_HTC] = {XR_FACE_EXPRESSION2_LIP_FUNNELER_LB_FB, XR_FACE_EXPRESSION2_LIP_FUNNELER_RB_FB},
    [XR_LIP_EXPRESSION_MOUTH_POUT_HTC] = {XR_FACE_EXPRESSION2_LIP_PUCKER_L_FB, XR_FACE_EXPRESSION2_LIP_PUCKER_R_FB},
    [XR_LIP_EXPRESSION_MOUTH_SMILE_RIGHT_HTC] = {XR_FACE_EXPRESSION2_LIP_CORNER_PULLER_R_FB, -1},
    [XR_LIP_EXPRESSION_MOUTH_SMILE_LEFT_HTC] = {XR_FACE_EXPRESSION2_LIP_CORNER_PULLER_L_FB, -1},
    [XR_LIP_EXPRESSION_MOUTH_SAD_RIGHT_HTC] = {XR_FACE_EXPRESSION2_LIP_CORNER_DEPRESSOR_R_FB, -1},
    [XR_LIP_EXPRESSION_MOUTH_SAD_LEFT_HTC] = {XR_FACE_EXPRESSION2_LIP_CORNER_DEPRESSOR_L_FB, -1},
    [XR_LIP_EXPRESSION_CHEEK_PUFF_RIGHT_HTC] = {XR_FACE_EXPRESSION2_CHEEK_PUFF_R_FB, -1},
    [XR_LIP_EXPRESSION_CHEEK_PUFF_LEFT_HTC] = {XR_FACE_EXPRESSION2_CHEEK_PUFF_L_FB, -1},
    [XR_LIP_EXPRESSION_CHEEK_SUCK_HTC] = {XR_FACE_EXPRESSION2_CHEEK_SUCK_L_FB, XR_FACE_EXPRESSION2_CHEEK_SUCK_R_FB},
    [XR_LIP_EXPRESSION_MOUTH_UPPER_UPRIGHT_HTC] = {XR_FACE_EXPRESSION2_UPPER_LIP_RAISER_R_FB, -1},
    [XR_LIP_EXPRESSION_MOUTH_UPPER_UPLEFT_HTC] = {XR_FACE_EXPRESSION2_UPPER_LIP_RAISER_L_FB, -1},
    [XR_LIP_EXPRESSION_MOUTH_LOWER_DOWNRIGHT_HTC] = {XR_FACE_EXPRESSION2_LOWER_LIP_DEPRESSOR_R_FB, -1},
    [XR_LIP_EXPRESSION_MOUTH_LOWER_DOWNLEFT_HTC] = {XR_FACE_EXPRESSION2_LOWER_LIP_DEPRESSOR_L_FB, -1},
    [XR_LIP_EXPRESSION_MOUTH_UPPER_INSIDE_HTC] = {XR_FACE_EXPRESSION2_LIP_SUCK_LT_FB, XR_FACE_EXPRESSION2_LIP_SUCK_RT_FB},
    [XR_LIP_EXPRESSION_MOUTH_LOWER_INSIDE_HTC] = {XR_FACE_EXPRESSION2_LIP_SUCK_LB_FB, XR_FACE_EXPRESSION2_LIP_SUCK_RB_FB},
    [XR_LIP_EXPRESSION_MOUTH_LOWER_OVERLAY_HTC] = {XR_FACE_EXPRESSION2_CHIN_RAISER_T_FB, -1},
    [XR_LIP_EXPRESSION_TONGUE_LONGSTEP1_HTC] = {XR_FACE_EXPRESSION2_TONGUE_OUT_FB, -1},
    [XR_LIP_EXPRESSION_TONGUE_LEFT_HTC] = {-1, -1},
    [XR_LIP_EXPRESSION_TONGUE_RIGHT_HTC] = {-1, -1},
    [XR_LIP_EXPRESSION_TONGUE_UP_HTC] = {XR_FACE_EXPRESSION2_TONGUE_TIP_ALVEOLAR_FB, -1},
    [XR_LIP_EXPRESSION_TONGUE_DOWN_HTC] = {-1, -1},
    [XR_LIP_EXPRESSION_TONGUE_ROLL_HTC] = {-1, -1},
    [XR_LIP_EXPRESSION_TONGUE_LONGSTEP2_HTC] = {XR_FACE_EXPRESSION2_TONGUE_OUT_FB, -1},
    [XR_LIP_EXPRESSION_TONGUE_UPRIGHT_MORPH_HTC] = {-1, -1},
    [XR_LIP_EXPRESSION_TONGUE_UPLEFT_MORPH_HTC] = {-1, -1},
    [XR_LIP_EXPRESSION_TONGUE_DOWNRIGHT_MORPH_HTC] = {-1, -1},
    [XR_LIP_EXPRESSION_TONGUE_DOWNLEFT_MORPH_HTC] = {-1, -1},
};

static XRAPI_ATTR XrResult XRAPI_CALL layer_xrCreateFacialTrackerHTC(XrSession session,
        const XrFacialTrackerCreateInfoHTC *info, XrFacialTrackerHTC *tracker) {
    if (session == XR_NULL_HANDLE) return XR_ERROR_HANDLE_INVALID;
    if (!info || !tracker || info->type != XR_TYPE_FACIAL_TRACKER_CREATE_INFO_HTC) return XR_ERROR_VALIDATION_FAILURE;
    if (info->facialTrackingType == XR_FACIAL_TRACKING_TYPE_EYE_DEFAULT_HTC) return XR_ERROR_FEATURE_UNSUPPORTED;
    if (info->facialTrackingType != XR_FACIAL_TRACKING_TYPE_LIP_DEFAULT_HTC) return XR_ERROR_VALIDATION_FAILURE;
    struct tracker *t = tracker_new(1);
    if (!t) return XR_ERROR_OUT_OF_MEMORY;
    *tracker = (XrFacialTrackerHTC)(uintptr_t)t;
    return XR_SUCCESS;
}

static XRAPI_ATTR XrResult XRAPI_CALL layer_xrDestroyFacialTrackerHTC(XrFacialTrackerHTC tracker) {
    return tracker_destroy((uint64_t)(uintptr_t)tracker, 1);
}

static XRAPI_ATTR XrResult XRAPI_CALL layer_xrGetFacialExpressionsHTC(XrFacialTrackerHTC tracker,
        XrFacialExpressionsHTC *out) {
    struct tracker *t = tracker_get((uint64_t)(uintptr_t)tracker, 1);
    if (!t) return XR_ERROR_HANDLE_INVALID;
    if (!out || out->type != XR_TYPE_FACIAL_EXPRESSIONS_HTC || !out->expressionWeightings ||
        out->expressionCount < XR_FACIAL_EXPRESSION_LIP_COUNT_HTC)
        return XR_ERROR_VALIDATION_FAILURE;
    struct block b;
    pthread_mutex_lock(&t->reader.lock);
    enum frame_state s = reader_read(&t->reader, &b);
    pthread_mutex_unlock(&t->reader.lock);
    for (unsigned i = 0; i < XR_FACIAL_EXPRESSION_LIP_COUNT_HTC; i++) {
        const int8_t *m = HTC_LIP_FROM_FB[i];
        float v = 0.0f;
        if (s == FRAME_OK && m[0] >= 0) v = m[1] >= 0 ? 0.5f * (b.weights[m[0]] + b.weights[m[1]]) : b.weights[m[0]];
        out->expressionWeightings[i] = v;
    }
    out->isActive = (s == FRAME_OK && (b.flags & BLOCK_FLAG_VALID)) ? XR_TRUE : XR_FALSE;
    out->sampleTime = s == FRAME_OK ? to_xr_time(t->instance, b.time_ns, 0) : 0;
    return XR_SUCCESS;
}

/* ---- instance-level calls ---------------------------------------------------------------- */
static XRAPI_ATTR XrResult XRAPI_CALL layer_xrGetSystemProperties(XrInstance instance, XrSystemId system,
        XrSystemProperties *props) {
    pthread_mutex_lock(&g_lock);
    struct instance *inst = find_instance(instance);
    struct instance copy = inst ? *inst : (struct instance){0};
    pthread_mutex_unlock(&g_lock);
    if (!inst) return XR_ERROR_HANDLE_INVALID;
    XrResult res = copy.next_system_properties(instance, system, props);
    if (XR_FAILED(res)) return res;
    for (XrBaseOutStructure *s = (XrBaseOutStructure *)props->next; s; s = s->next) {
        if (s->type == XR_TYPE_SYSTEM_FACE_TRACKING_PROPERTIES2_FB && copy.fb) {
            XrSystemFaceTrackingProperties2FB *p = (XrSystemFaceTrackingProperties2FB *)s;
            p->supportsVisualFaceTracking = XR_TRUE;
            p->supportsAudioFaceTracking = XR_FALSE;
        } else if (s->type == XR_TYPE_SYSTEM_FACIAL_TRACKING_PROPERTIES_HTC && copy.htc) {
            XrSystemFacialTrackingPropertiesHTC *p = (XrSystemFacialTrackingPropertiesHTC *)s;
            p->supportEyeFacialTracking = XR_FALSE;
            p->supportLipFacialTracking = XR_TRUE;
        }
    }
    return res;
}

static XRAPI_ATTR XrResult XRAPI_CALL layer_xrEnumerateInstanceExtensionProperties(const char *layerName,
        uint32_t capacity, uint32_t *count, XrExtensionProperties *props) {
    if (!count) return XR_ERROR_VALIDATION_FAILURE;
    if (layerName && strcmp(layerName, LAYER_NAME) != 0) return XR_ERROR_API_LAYER_NOT_PRESENT;
    *count = N_OUR_EXTENSIONS;
    if (capacity == 0) return XR_SUCCESS;
    if (capacity < N_OUR_EXTENSIONS) return XR_ERROR_SIZE_INSUFFICIENT;
    for (unsigned i = 0; i < N_OUR_EXTENSIONS; i++) {
        void *next = props[i].next;
        props[i] = OUR_EXTENSIONS[i];
        props[i].next = next;
    }
    return XR_SUCCESS;
}

static XRAPI_ATTR XrResult XRAPI_CALL layer_xrDestroyInstance(XrInstance instance) {
    pthread_mutex_lock(&g_lock);
    struct instance *inst = find_instance(instance);
    PFN_xrDestroyInstance next = inst ? inst->next_destroy : NULL;
    if (inst) memset(inst, 0, sizeof *inst);
    for (struct tracker *t = g_trackers; t; t = t->next)
        if (t->instance == inst) t->instance = NULL; /* no time conversion without it */
    pthread_mutex_unlock(&g_lock);
    return next ? next(instance) : XR_ERROR_HANDLE_INVALID;
}

static XRAPI_ATTR XrResult XRAPI_CALL layer_xrGetInstanceProcAddr(XrInstance instance, const char *name,
        PFN_xrVoidFunction *function) {
    if (!name || !function) return XR_ERROR_VALIDATION_FAILURE;
    pthread_mutex_lock(&g_lock);
    struct instance *inst = find_instance(instance);
    struct instance copy = inst ? *inst : (struct instance){0};
    pthread_mutex_unlock(&g_lock);
#define OURS(fn) do { *function = (PFN_xrVoidFunction)layer_##fn; return XR_SUCCESS; } while (0)
    if (strcmp(name, "xrGetInstanceProcAddr") == 0) OURS(xrGetInstanceProcAddr);
    if (strcmp(name, "xrEnumerateInstanceExtensionProperties") == 0 && instance == XR_NULL_HANDLE)
        OURS(xrEnumerateInstanceExtensionProperties);
    if (inst) {
        if (strcmp(name, "xrDestroyInstance") == 0) OURS(xrDestroyInstance);
        if (strcmp(name, "xrGetSystemProperties") == 0) OURS(xrGetSystemProperties);
        int fb = strstr(name, "2FB") != NULL, htc = strstr(name, "HTC") != NULL;
        if ((fb && copy.fb) || (htc && copy.htc)) {
            if (strcmp(name, "xrCreateFaceTracker2FB") == 0) OURS(xrCreateFaceTracker2FB);
            if (strcmp(name, "xrDestroyFaceTracker2FB") == 0) OURS(xrDestroyFaceTracker2FB);
            if (strcmp(name, "xrGetFaceExpressionWeights2FB") == 0) OURS(xrGetFaceExpressionWeights2FB);
            if (strcmp(name, "xrCreateFacialTrackerHTC") == 0) OURS(xrCreateFacialTrackerHTC);
            if (strcmp(name, "xrDestroyFacialTrackerHTC") == 0) OURS(xrDestroyFacialTrackerHTC);
            if (strcmp(name, "xrGetFacialExpressionsHTC") == 0) OURS(xrGetFacialExpressionsHTC);
        } else if (strcmp(name, "xrCreateFaceTracker2FB") == 0 || strcmp(name, "xrDestroyFaceTracker2FB") == 0 ||
                   strcmp(name, "xrGetFaceExpressionWeights2FB") == 0 || strcmp(name, "xrCreateFacialTrackerHTC") == 0 ||
                   strcmp(name, "xrDestroyFacialTrackerHTC") == 0 || strcmp(name, "xrGetFacialExpressionsHTC") == 0) {
            *function = NULL; /* the extension is not enabled on this instance */
            return XR_ERROR_FUNCTION_UNSUPPORTED;
        }
        return copy.next_gipa(instance, name, function);
    }
#undef OURS
    /* no instance of ours: only the next layer (or runtime) can answer */
    if (instance != XR_NULL_HANDLE) return XR_ERROR_HANDLE_INVALID;
    *function = NULL;
    return XR_ERROR_FUNCTION_UNSUPPORTED;
}

static int runtime_offers(PFN_xrGetInstanceProcAddr next_gipa, const char *ext) {
    PFN_xrEnumerateInstanceExtensionProperties en = NULL;
    if (next_gipa(XR_NULL_HANDLE, "xrEnumerateInstanceExtensionProperties", (PFN_xrVoidFunction *)&en) != XR_SUCCESS || !en)
        return 0;
    uint32_t n = 0;
    if (en(NULL, 0, &n, NULL) != XR_SUCCESS || n == 0 || n > 4096) return 0;
    XrExtensionProperties *p = calloc(n, sizeof *p);
    if (!p) return 0;
    for (uint32_t i = 0; i < n; i++) p[i].type = XR_TYPE_EXTENSION_PROPERTIES;
    int found = 0;
    if (en(NULL, n, &n, p) == XR_SUCCESS)
        for (uint32_t i = 0; i < n && !found; i++) found = strcmp(p[i].extensionName, ext) == 0;
    free(p);
    return found;
}

static XRAPI_ATTR XrResult XRAPI_CALL layer_xrCreateApiLayerInstance(const XrInstanceCreateInfo *info,
        const XrApiLayerCreateInfo *layer_info, XrInstance *instance) {
    if (!info || !layer_info || !instance || !layer_info->nextInfo ||
        strcmp(layer_info->nextInfo->layerName, LAYER_NAME) != 0)
        return XR_ERROR_INITIALIZATION_FAILED;
    PFN_xrGetInstanceProcAddr next_gipa = layer_info->nextInfo->nextGetInstanceProcAddr;
    PFN_xrCreateApiLayerInstance next_create = layer_info->nextInfo->nextCreateApiLayerInstance;

    /* The runtime does not know our extensions: take them out of the list it sees, and ask it
     * for the time conversion the weights' time stamps need. */
    uint32_t n = info->enabledExtensionCount;
    const char **names = calloc(n + 1, sizeof *names);
    if (!names) return XR_ERROR_OUT_OF_MEMORY;
    int fb = 0, htc = 0, has_convert = 0;
    uint32_t k = 0;
    for (uint32_t i = 0; i < n; i++) {
        const char *e = info->enabledExtensionNames[i];
        if (strcmp(e, XR_FB_FACE_TRACKING2_EXTENSION_NAME) == 0) fb = 1;
        else if (strcmp(e, XR_HTC_FACIAL_TRACKING_EXTENSION_NAME) == 0) htc = 1;
        else {
            has_convert |= strcmp(e, XR_KHR_CONVERT_TIMESPEC_TIME_EXTENSION_NAME) == 0;
            names[k++] = e;
        }
    }
    if ((fb || htc) && !has_convert && runtime_offers(next_gipa, XR_KHR_CONVERT_TIMESPEC_TIME_EXTENSION_NAME)) {
        names[k++] = XR_KHR_CONVERT_TIMESPEC_TIME_EXTENSION_NAME;
        has_convert = 1;
    }
    XrInstanceCreateInfo ours = *info;
    ours.enabledExtensionCount = k;
    ours.enabledExtensionNames = names;
    XrApiLayerCreateInfo next_info = *layer_info;
    next_info.nextInfo = layer_info->nextInfo->next;
    XrResult res = next_create(&ours, &next_info, instance);
    free(names);
    if (XR_FAILED(res)) return res;

    struct instance rec = {*instance, next_gipa, NULL, NULL, NULL, fb, htc};
    if (next_gipa(*instance, "xrDestroyInstance", (PFN_xrVoidFunction *)&rec.next_destroy) != XR_SUCCESS ||
        next_gipa(*instance, "xrGetSystemProperties", (PFN_xrVoidFunction *)&rec.next_system_properties) != XR_SUCCESS) {
        if (rec.next_destroy) rec.next_destroy(*instance);
        return XR_ERROR_INITIALIZATION_FAILED;
    }
    if (has_convert &&
        next_gipa(*instance, "xrConvertTimespecTimeToTimeKHR", (PFN_xrVoidFunction *)&rec.next_convert) != XR_SUCCESS)
        rec.next_convert = NULL;
    pthread_mutex_lock(&g_lock);
    int slot = -1;
    for (int i = 0; i < MAX_INSTANCES && slot < 0; i++)
        if (g_instances[i].handle == XR_NULL_HANDLE) slot = i;
    if (slot >= 0) g_instances[slot] = rec;
    pthread_mutex_unlock(&g_lock);
    if (slot < 0) {
        rec.next_destroy(*instance);
        return XR_ERROR_LIMIT_REACHED;
    }
    return XR_SUCCESS;
}

/* ---- loader negotiation ------------------------------------------------------------------ */
EXPORT XRAPI_ATTR XrResult XRAPI_CALL xrNegotiateLoaderApiLayerInterface(const XrNegotiateLoaderInfo *loader,
        const char *layerName, XrNegotiateApiLayerRequest *request) {
    if (!loader || !request || !layerName || strcmp(layerName, LAYER_NAME) != 0 ||
        loader->structType != XR_LOADER_INTERFACE_STRUCT_LOADER_INFO ||
        loader->structVersion != XR_LOADER_INFO_STRUCT_VERSION || loader->structSize != sizeof(XrNegotiateLoaderInfo) ||
        request->structType != XR_LOADER_INTERFACE_STRUCT_API_LAYER_REQUEST ||
        request->structVersion != XR_API_LAYER_INFO_STRUCT_VERSION ||
        request->structSize != sizeof(XrNegotiateApiLayerRequest) ||
        loader->minInterfaceVersion > XR_CURRENT_LOADER_API_LAYER_VERSION ||
        loader->maxInterfaceVersion < XR_CURRENT_LOADER_API_LAYER_VERSION ||
        loader->minApiVersion > XR_CURRENT_API_VERSION)
        return XR_ERROR_INITIALIZATION_FAILED;
    request->layerInterfaceVersion = XR_CURRENT_LOADER_API_LAYER_VERSION;
    request->layerApiVersion = loader->maxApiVersion < XR_CURRENT_API_VERSION ? loader->maxApiVersion
                                                                              : XR_CURRENT_API_VERSION;
    request->getInstanceProcAddr = layer_xrGetInstanceProcAddr;
    request->createApiLayerInstance = layer_xrCreateApiLayerInstance;
    return XR_SUCCESS;
}
