// newdelete.cc — the 22 C++ operator new/delete symbols (plain, array, nothrow, sized, aligned).
//
// Defined here so C++ programs reach the pools (libstdc++'s own versions would win otherwise and
// lose the size of sized delete), and written in C++ so `new` can honour the new-handler and
// throw std::bad_alloc as the standard requires.
#include <cstddef>
#include <new>

#include "shim.h"

namespace {

[[gnu::noinline]] void *new_slow(std::size_t n, std::size_t align)
{
    for (;;) {
        void *p = align ? sp_memalign(align, n) : sp_malloc(n);
        if (p) return p;
        std::new_handler h = std::get_new_handler();
        if (!h) throw std::bad_alloc();
        h();
    }
}

inline void *new_impl(std::size_t n)
{
    void *p = sp_malloc(n);
    if (__builtin_expect(p != nullptr, 1)) return p;
    return new_slow(n, 0);
}

inline void *new_aligned(std::size_t n, std::align_val_t al)
{
    void *p = sp_memalign(static_cast<std::size_t>(al), n);
    if (__builtin_expect(p != nullptr, 1)) return p;
    return new_slow(n, static_cast<std::size_t>(al));
}

void *new_nothrow(std::size_t n, std::size_t align) noexcept
{
    try {
        return new_slow(n, align);
    } catch (...) {
        return nullptr;
    }
}

}  // namespace

#define EXPORT __attribute__((visibility("default")))

EXPORT void *operator new(std::size_t n) { return new_impl(n); }
EXPORT void *operator new[](std::size_t n) { return new_impl(n); }
EXPORT void *operator new(std::size_t n, const std::nothrow_t &) noexcept { return new_nothrow(n, 0); }
EXPORT void *operator new[](std::size_t n, const std::nothrow_t &) noexcept { return new_nothrow(n, 0); }
EXPORT void *operator new(std::size_t n, std::align_val_t al) { return new_aligned(n, al); }
EXPORT void *operator new[](std::size_t n, std::align_val_t al) { return new_aligned(n, al); }
EXPORT void *operator new(std::size_t n, std::align_val_t al, const std::nothrow_t &) noexcept
{
    return new_nothrow(n, static_cast<std::size_t>(al));
}
EXPORT void *operator new[](std::size_t n, std::align_val_t al, const std::nothrow_t &) noexcept
{
    return new_nothrow(n, static_cast<std::size_t>(al));
}

EXPORT void operator delete(void *p) noexcept { sp_free(p); }
EXPORT void operator delete[](void *p) noexcept { sp_free(p); }
EXPORT void operator delete(void *p, const std::nothrow_t &) noexcept { sp_free(p); }
EXPORT void operator delete[](void *p, const std::nothrow_t &) noexcept { sp_free(p); }
EXPORT void operator delete(void *p, std::size_t n) noexcept { sp_free_sized(p, n); }
EXPORT void operator delete[](void *p, std::size_t n) noexcept { sp_free_sized(p, n); }
// Aligned forms: an over-aligned object may sit in a larger class than its size says, so the
// class comes from the backend's usable size (plain free).
EXPORT void operator delete(void *p, std::align_val_t) noexcept { sp_free(p); }
EXPORT void operator delete[](void *p, std::align_val_t) noexcept { sp_free(p); }
EXPORT void operator delete(void *p, std::size_t, std::align_val_t) noexcept { sp_free(p); }
EXPORT void operator delete[](void *p, std::size_t, std::align_val_t) noexcept { sp_free(p); }
EXPORT void operator delete(void *p, std::align_val_t, const std::nothrow_t &) noexcept { sp_free(p); }
EXPORT void operator delete[](void *p, std::align_val_t, const std::nothrow_t &) noexcept { sp_free(p); }
