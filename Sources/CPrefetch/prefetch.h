#ifndef SIDECAST_PREFETCH_H
#define SIDECAST_PREFETCH_H

/* Starts loading the cache line that holds `address`, which is about to be written (a
   reference count): a hint to the CPU, which never faults, whatever the address. */
static inline void sidecast_prefetch(const void *address) {
    __builtin_prefetch(address, 1, 3);
}

#endif
