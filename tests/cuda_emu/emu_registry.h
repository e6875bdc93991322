// emu_registry.h -- name -> kernel table and the C entry points that Python calls via ctypes.
//
// Include after cuda_emu.h and the .cu files, then list the kernels:
//     EMU_KERNEL(gelu_forward_erf_kernel)
//     EMU_KERNEL(attention_forward_kernel<64>)
// The name is the same string NVRTC and CuPy use (kernels/cuda/sources.py).
//
// Arguments arrive the way cudaLaunchKernel takes them: an array of pointers, one per kernel
// parameter, each pointing at the parameter's value. Python also sends a type signature,
// one letter per parameter, which must match the kernel's C++ parameter types exactly:
//     F float*   B unsigned char*   I int*   Q long long*
//     f float    i int              q long long
// so an argument passed with the wrong type fails here instead of being misread -- the same
// mistake would be silent on a GPU.
#ifndef MINILM_EMU_REGISTRY_H
#define MINILM_EMU_REGISTRY_H

#include <map>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

namespace emu {

template <class T>
struct always_false : std::false_type {};

template <class T>
constexpr char arg_code() {
    using U = std::remove_cv_t<T>;
    if constexpr (std::is_pointer_v<U>) {
        using P = std::remove_cv_t<std::remove_pointer_t<U>>;
        if constexpr (std::is_same_v<P, float>) return 'F';
        else if constexpr (std::is_same_v<P, unsigned char>) return 'B';
        else if constexpr (std::is_same_v<P, int>) return 'I';
        else if constexpr (std::is_same_v<P, long long>) return 'Q';
        else static_assert(always_false<T>::value, "unsupported pointer parameter type");
    } else if constexpr (std::is_same_v<U, float>) {
        return 'f';
    } else if constexpr (std::is_same_v<U, int>) {
        return 'i';
    } else if constexpr (std::is_same_v<U, long long>) {
        return 'q';
    } else {
        static_assert(always_false<T>::value, "unsupported kernel parameter type");
    }
    return '?';
}

struct KernelEntry {
    std::string signature;
    void (*launch)(void* fn, void** args, dim3 grid, dim3 block);
    void* fn;
};

// A plain global (not a function-local static: those are what emu_shared.ld poisons).
inline std::map<std::string, KernelEntry> g_registry;
inline thread_local std::string g_last_error;

template <class... A, size_t... I>
void launch_with(void (*fn)(A...), void** args, dim3 grid, dim3 block, std::index_sequence<I...>) {
    // Copy the argument values once; every emulated thread calls the kernel with them.
    std::tuple<std::remove_cv_t<A>...> values(*static_cast<std::remove_cv_t<A>*>(args[I])...);
    launch(grid, block, [&] { std::apply(fn, values); });
}

template <class... A>
bool register_kernel(const char* name, void (*fn)(A...)) {
    KernelEntry entry;
    entry.signature = std::string{arg_code<A>()...};
    entry.fn = reinterpret_cast<void*>(fn);
    entry.launch = [](void* f, void** args, dim3 grid, dim3 block) {
        launch_with(reinterpret_cast<void (*)(A...)>(f), args, grid, block,
                    std::index_sequence_for<A...>{});
    };
    g_registry[name] = entry;
    return true;
}

}  // namespace emu

#define EMU_CAT2(a, b) a##b
#define EMU_CAT(a, b) EMU_CAT2(a, b)
#define EMU_KERNEL(...) \
    static const bool EMU_CAT(emu_registered_, __COUNTER__) = \
        emu::register_kernel(#__VA_ARGS__, &__VA_ARGS__);

#define EMU_EXPORT __attribute__((visibility("default")))

extern "C" {

EMU_EXPORT int emu_kernel_count() { return (int)emu::g_registry.size(); }

EMU_EXPORT const char* emu_kernel_name(int index) {
    auto it = emu::g_registry.begin();
    std::advance(it, index);
    return it->first.c_str();
}

EMU_EXPORT const char* emu_last_error() { return emu::g_last_error.c_str(); }

// Run kernel `name` on a grid; 0 on success, 1 with emu_last_error() set otherwise.
EMU_EXPORT int emu_launch(const char* name, const char* signature, unsigned gx, unsigned gy, unsigned gz,
               unsigned bx, unsigned by, unsigned bz, void** args) {
    emu::g_last_error.clear();
    auto it = emu::g_registry.find(name);
    if (it == emu::g_registry.end()) {
        emu::g_last_error = std::string("no kernel named ") + name + " in the emulator library";
        return 1;
    }
    if (it->second.signature != signature) {
        emu::g_last_error = std::string(name) + ": arguments of types '" + signature +
                            "' do not match the kernel's parameters '" + it->second.signature +
                            "' (F float*, B uchar*, I int*, Q int64*, f float, i int, q int64)";
        return 1;
    }
    try {
        it->second.launch(it->second.fn, args, dim3(gx, gy, gz), dim3(bx, by, bz));
    } catch (const std::exception& e) {
        emu::g_last_error = std::string(name) + ": " + e.what();
        return 1;
    }
    return 0;
}

}  // extern "C"

#endif  // MINILM_EMU_REGISTRY_H
