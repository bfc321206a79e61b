/* Switches callgrind's instrumentation on and off from Python (ctypes), so that only
 * the measured requests are counted. Outside valgrind these are no-ops. */
#include <valgrind/callgrind.h>

void oxbench_start(void) {
    CALLGRIND_ZERO_STATS;
    CALLGRIND_START_INSTRUMENTATION;
}

void oxbench_stop(void) {
    CALLGRIND_STOP_INSTRUMENTATION;
}
