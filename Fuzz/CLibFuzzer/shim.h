// libFuzzer's driver, from the runtime that `-sanitize=fuzzer` links (no library to name here).
#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*test_one_input)(const uint8_t *data, size_t size));

// SwiftPM links an executable's `main` to a function named after its target (`<target>_main`),
// so libFuzzer's own `main` never runs: each fuzz target defines that function and starts the
// driver from it.
static inline int sidecast_fuzz_main(int argc, char **argv, int (*test_one_input)(const uint8_t *data, size_t size)) {
    return LLVMFuzzerRunDriver(&argc, &argv, test_one_input);
}
