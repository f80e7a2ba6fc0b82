/* A small OpenXR application for testing vrfer's face layer through the real loader.
 *
 *   face_client extensions   print "fb=0|1 htc=0|1 create_fb=<XrResult>" and exit
 *   face_client serve        open a headless session with face trackers, then answer commands
 *                            read on stdin, one line each:
 *       read                 fb <res> valid <0|1> time <XrTime> w <70 floats> c <2 floats>
 *       htc                  htc <res> active <0|1> time <XrTime> w <37 floats>
 *       xrtime <ns>          xrtime <XrTime of that CLOCK_MONOTONIC time> (a passed-through call)
 *       now                  now <XrTime of this moment>
 *       misuse               misuse <res: wrong count> <res: audio-only tracker> <res: HTC eye tracker>
 *       bench <n>            bench get_p50 <ns> get_p99 <ns> pass_p50 <ns> pass_p99 <ns> locate_p50 <ns>
 *                            locate_p99 <ns> after_locate_p50 <ns> after_locate_p99 <ns> age_p50 <ns> age_p99 <ns> invalid <count>: the layer's
 *                            get-weights call interleaved with a call it passes through that does
 *                            no work (xrConvertTimespecTimeToTimeKHR); then n/100 xrLocateSpace, the
 *                            head pose a game asks for every frame (an IPC round trip to Monado),
 *                            each followed by one get-weights (after_locate: a colder cache)
 *       destroy              destroy <res> <res: a call on the destroyed handle>
 *       quit
 * Any failure of the set-up prints "error: <what> <XrResult>" and exits 1.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define XR_USE_TIMESPEC 1
#include <openxr/openxr.h>
#include <openxr/openxr_platform.h>

static XrInstance inst;
static PFN_xrConvertTimespecTimeToTimeKHR convert;

#define CHECK(what, call) do { XrResult r_ = (call); if (XR_FAILED(r_)) { \
    printf("error: %s %d\n", what, (int)r_); fflush(stdout); exit(1); } } while (0)
#define PROC(name, var) CHECK(#name, xrGetInstanceProcAddr(inst, #name, (PFN_xrVoidFunction *)&var))

static int64_t mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static XrTime xr_time_of(int64_t ns) {
    struct timespec ts = {(time_t)(ns / 1000000000LL), (long)(ns % 1000000000LL)};
    XrTime t = 0;
    CHECK("xrConvertTimespecTimeToTimeKHR", convert(inst, &ts, &t));
    return t;
}

static int has_ext(const char *name) {
    uint32_t n = 0;
    CHECK("xrEnumerateInstanceExtensionProperties", xrEnumerateInstanceExtensionProperties(NULL, 0, &n, NULL));
    XrExtensionProperties *p = calloc(n, sizeof *p);
    for (uint32_t i = 0; i < n; i++) p[i].type = XR_TYPE_EXTENSION_PROPERTIES;
    CHECK("xrEnumerateInstanceExtensionProperties", xrEnumerateInstanceExtensionProperties(NULL, n, &n, p));
    int found = 0;
    for (uint32_t i = 0; i < n; i++) found |= strcmp(p[i].extensionName, name) == 0;
    free(p);
    return found;
}

static XrResult create_instance(const char **exts, uint32_t n) {
    XrInstanceCreateInfo ci = {XR_TYPE_INSTANCE_CREATE_INFO};
    strcpy(ci.applicationInfo.applicationName, "vrfer-face-client");
    ci.applicationInfo.apiVersion = XR_MAKE_VERSION(1, 0, 0);
    ci.enabledExtensionCount = n;
    ci.enabledExtensionNames = exts;
    return xrCreateInstance(&ci, &inst);
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static void percentiles(int64_t *v, int n, int64_t *p50, int64_t *p99) {
    qsort(v, n, sizeof *v, cmp_i64);
    *p50 = v[n / 2];
    *p99 = v[(int)((n - 1) * 0.99)];
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc < 2) { fprintf(stderr, "usage: face_client extensions|serve\n"); return 2; }
    if (strcmp(argv[1], "extensions") == 0) {
        int fb = has_ext(XR_FB_FACE_TRACKING2_EXTENSION_NAME), htc = has_ext(XR_HTC_FACIAL_TRACKING_EXTENSION_NAME);
        const char *exts[] = {XR_MND_HEADLESS_EXTENSION_NAME, XR_FB_FACE_TRACKING2_EXTENSION_NAME};
        XrResult r = create_instance(exts, 2);
        printf("fb=%d htc=%d create_fb=%d\n", fb, htc, (int)r);
        if (XR_SUCCEEDED(r)) xrDestroyInstance(inst);
        return 0;
    }
    if (strcmp(argv[1], "serve") != 0) { fprintf(stderr, "usage: face_client extensions|serve\n"); return 2; }

    const char *exts[] = {XR_MND_HEADLESS_EXTENSION_NAME, XR_FB_FACE_TRACKING2_EXTENSION_NAME,
                          XR_HTC_FACIAL_TRACKING_EXTENSION_NAME, XR_KHR_CONVERT_TIMESPEC_TIME_EXTENSION_NAME};
    CHECK("xrCreateInstance", create_instance(exts, 4));
    XrSystemGetInfo sgi = {XR_TYPE_SYSTEM_GET_INFO, NULL, XR_FORM_FACTOR_HEAD_MOUNTED_DISPLAY};
    XrSystemId system;
    CHECK("xrGetSystem", xrGetSystem(inst, &sgi, &system));
    XrSystemFacialTrackingPropertiesHTC htc_props = {XR_TYPE_SYSTEM_FACIAL_TRACKING_PROPERTIES_HTC};
    XrSystemFaceTrackingProperties2FB fb_props = {XR_TYPE_SYSTEM_FACE_TRACKING_PROPERTIES2_FB, &htc_props};
    XrSystemProperties props = {XR_TYPE_SYSTEM_PROPERTIES, &fb_props};
    CHECK("xrGetSystemProperties", xrGetSystemProperties(inst, system, &props));
    XrSessionCreateInfo sci = {XR_TYPE_SESSION_CREATE_INFO, NULL, 0, system};
    XrSession session;
    CHECK("xrCreateSession", xrCreateSession(inst, &sci, &session));

    PFN_xrCreateFaceTracker2FB create_ft;
    PFN_xrDestroyFaceTracker2FB destroy_ft;
    PFN_xrGetFaceExpressionWeights2FB get_w;
    PFN_xrCreateFacialTrackerHTC create_htc;
    PFN_xrGetFacialExpressionsHTC get_htc;
    PROC(xrConvertTimespecTimeToTimeKHR, convert);
    PROC(xrCreateFaceTracker2FB, create_ft);
    PROC(xrDestroyFaceTracker2FB, destroy_ft);
    PROC(xrGetFaceExpressionWeights2FB, get_w);
    PROC(xrCreateFacialTrackerHTC, create_htc);
    PROC(xrGetFacialExpressionsHTC, get_htc);

    XrFaceTrackingDataSource2FB visual = XR_FACE_TRACKING_DATA_SOURCE2_VISUAL_FB;
    XrFaceTrackerCreateInfo2FB fci = {XR_TYPE_FACE_TRACKER_CREATE_INFO2_FB, NULL, XR_FACE_EXPRESSION_SET2_DEFAULT_FB, 1, &visual};
    XrFaceTracker2FB ft;
    CHECK("xrCreateFaceTracker2FB", create_ft(session, &fci, &ft));
    XrFacialTrackerCreateInfoHTC hci = {XR_TYPE_FACIAL_TRACKER_CREATE_INFO_HTC, NULL, XR_FACIAL_TRACKING_TYPE_LIP_DEFAULT_HTC};
    XrFacialTrackerHTC lip;
    CHECK("xrCreateFacialTrackerHTC", create_htc(session, &hci, &lip));
    printf("ready fb_visual=%d fb_audio=%d htc_lip=%d htc_eye=%d\n", fb_props.supportsVisualFaceTracking,
           fb_props.supportsAudioFaceTracking, htc_props.supportLipFacialTracking, htc_props.supportEyeFacialTracking);

    float w[XR_FACE_EXPRESSION2_COUNT_FB], c[XR_FACE_CONFIDENCE2_COUNT_FB], lw[XR_FACIAL_EXPRESSION_LIP_COUNT_HTC];
    XrFaceExpressionWeights2FB out = {XR_TYPE_FACE_EXPRESSION_WEIGHTS2_FB, NULL, XR_FACE_EXPRESSION2_COUNT_FB, w,
                                      XR_FACE_CONFIDENCE2_COUNT_FB, c};
    char line[256];
    while (fgets(line, sizeof line, stdin)) {
        XrFaceExpressionInfo2FB info = {XR_TYPE_FACE_EXPRESSION_INFO2_FB, NULL, xr_time_of(mono_ns())};
        if (strncmp(line, "read", 4) == 0) {
            XrResult r = get_w(ft, &info, &out);
            printf("fb %d valid %d time %lld w", (int)r, out.isValid, (long long)out.time);
            for (int i = 0; i < XR_FACE_EXPRESSION2_COUNT_FB; i++) printf(" %.9g", w[i]);
            printf(" c %.9g %.9g\n", c[0], c[1]);
        } else if (strncmp(line, "htc", 3) == 0) {
            XrFacialExpressionsHTC e = {XR_TYPE_FACIAL_EXPRESSIONS_HTC, NULL, 0, 0, XR_FACIAL_EXPRESSION_LIP_COUNT_HTC, lw};
            XrResult r = get_htc(lip, &e);
            printf("htc %d active %d time %lld w", (int)r, e.isActive, (long long)e.sampleTime);
            for (int i = 0; i < XR_FACIAL_EXPRESSION_LIP_COUNT_HTC; i++) printf(" %.9g", lw[i]);
            printf("\n");
        } else if (strncmp(line, "xrtime ", 7) == 0) {
            printf("xrtime %lld\n", (long long)xr_time_of(strtoll(line + 7, NULL, 10)));
        } else if (strncmp(line, "now", 3) == 0) {
            printf("now %lld\n", (long long)info.time);
        } else if (strncmp(line, "misuse", 6) == 0) {
            XrFaceExpressionWeights2FB bad = out;
            bad.weightCount = 63;
            XrResult r1 = get_w(ft, &info, &bad);
            XrFaceTrackingDataSource2FB audio = XR_FACE_TRACKING_DATA_SOURCE2_AUDIO_FB;
            XrFaceTrackerCreateInfo2FB aci = fci;
            aci.requestedDataSources = &audio;
            XrFaceTracker2FB aft;
            XrResult r2 = create_ft(session, &aci, &aft);
            XrFacialTrackerCreateInfoHTC eci = {XR_TYPE_FACIAL_TRACKER_CREATE_INFO_HTC, NULL, XR_FACIAL_TRACKING_TYPE_EYE_DEFAULT_HTC};
            XrFacialTrackerHTC eye;
            XrResult r3 = create_htc(session, &eci, &eye);
            printf("misuse %d %d %d\n", (int)r1, (int)r2, (int)r3);
        } else if (strncmp(line, "bench ", 6) == 0) {
            int n = atoi(line + 6);
            if (n < 100) n = 100;
            int64_t *get = malloc(n * sizeof *get), *pass = malloc(n * sizeof *pass), *age = malloc(n * sizeof *age);
            int64_t *loc = malloc(n * sizeof *loc);
            XrReferenceSpaceCreateInfo rs = {XR_TYPE_REFERENCE_SPACE_CREATE_INFO, NULL, XR_REFERENCE_SPACE_TYPE_VIEW,
                                             {{0, 0, 0, 1}, {0, 0, 0}}};
            XrSpace view, local;
            CHECK("xrCreateReferenceSpace", xrCreateReferenceSpace(session, &rs, &view));
            rs.referenceSpaceType = XR_REFERENCE_SPACE_TYPE_LOCAL;
            CHECK("xrCreateReferenceSpace", xrCreateReferenceSpace(session, &rs, &local));
            XrSpaceLocation where = {XR_TYPE_SPACE_LOCATION};
            struct timespec ts;
            XrTime t;
            int invalid = 0;
            for (int i = 0; i < n; i++) {  /* interleaved, so both see the same machine */
                int64_t t0 = mono_ns();
                get_w(ft, &info, &out);
                int64_t t1 = mono_ns();
                ts.tv_sec = t1 / 1000000000LL;
                ts.tv_nsec = t1 % 1000000000LL;
                convert(inst, &ts, &t);
                int64_t t2 = mono_ns();
                get[i] = t1 - t0;
                pass[i] = t2 - t1;
                age[i] = t - out.time;  /* both XrTime, in ns: now against the weights' capture time */
                invalid += !out.isValid;
            }
            int64_t *cold = malloc(n / 100 * sizeof *cold);
            for (int i = 0; i < n / 100; i++) {  /* ... each followed by a get-weights, as in a frame */
                int64_t t0 = mono_ns();
                xrLocateSpace(view, local, info.time, &where);
                int64_t t1 = mono_ns();
                get_w(ft, &info, &out);
                loc[i] = t1 - t0;
                cold[i] = mono_ns() - t1;
            }
            int64_t g50, g99, p50, p99, l50, l99, a50, a99, c50, c99;
            percentiles(cold, n / 100, &c50, &c99);
            percentiles(get, n, &g50, &g99);
            percentiles(pass, n, &p50, &p99);
            percentiles(loc, n / 100, &l50, &l99);
            percentiles(age, n, &a50, &a99);
            printf("bench get_p50 %lld get_p99 %lld pass_p50 %lld pass_p99 %lld locate_p50 %lld locate_p99 %lld "
                   "after_locate_p50 %lld after_locate_p99 %lld age_p50 %lld age_p99 %lld invalid %d\n",
                   (long long)g50, (long long)g99, (long long)p50, (long long)p99, (long long)l50, (long long)l99,
                   (long long)c50, (long long)c99, (long long)a50, (long long)a99, invalid);
            xrDestroySpace(view);
            xrDestroySpace(local);
            free(get); free(pass); free(loc); free(cold); free(age);
        } else if (strncmp(line, "destroy", 7) == 0) {
            XrResult r1 = destroy_ft(ft);
            XrResult r2 = get_w(ft, &info, &out);
            printf("destroy %d %d\n", (int)r1, (int)r2);
        } else if (strncmp(line, "quit", 4) == 0) {
            break;
        } else {
            printf("error: unknown command\n");
        }
    }
    xrDestroySession(session);
    xrDestroyInstance(inst);
    printf("bye\n");
    return 0;
}
