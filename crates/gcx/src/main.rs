//! The `gcx` binary: everything lives in the library; this only hands over.

/// mimalloc instead of glibc's malloc: the pipeline allocates and frees many small
/// short-lived buffers (JSON, frames, rows) across threads, where glibc spent a fifth of
/// the dispatch benchmark's CPU (BENCHMARKS.md). Built with `no_thp`: with transparent
/// huge pages its eagerly committed arenas took `gcx serve`'s idle RSS from 20 to 34 MiB.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    gcx::cli::main()
}
