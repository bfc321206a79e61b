/* Switches callgrind's instrumentation on and off from Python (ctypes), so that only
 * the measured requests are counted. Outside valgrind these are no-ops. */
#include <valgrind/callgrind.h>

void oxbench_start(void) {
    CALLGRIND_ZERO_STATS;
    CALLGRIND_START_INSTRUMENTATION;
}

/* Between the requests and the final flush: writes the calling thread's counts so far
 * (callgrind dumps the current thread only) and zeroes them, so the application
 * thread's requests are read apart from its flush. */
void oxbench_mark(void) {
    CALLGRIND_DUMP_STATS_AT("requests");
}

void oxbench_stop(void) {
    CALLGRIND_STOP_INSTRUMENTATION;
}
