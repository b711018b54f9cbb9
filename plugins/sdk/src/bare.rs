//! The runtime of a `#![no_std]` plugin, wasm32 only: a bump allocator for
//! the global allocator and `cabi_realloc`, installed with the panic handler
//! by [`no_std_runtime!`](crate::no_std_runtime).
//!
//! With `std`, a `wasm32-wasip2` component imports the WASI CLI set (stdio,
//! environment, exit) whether it uses it or not, which makes it three core
//! modules and fourteen imported instances to link per call. A `#![no_std]`
//! crate with this runtime imports nothing from WASI.
//!
//! Every call runs in a fresh instance, so the allocator is a bump allocator
//! over linear memory: an allocation moves a pointer (growing memory by whole
//! pages when needed, under the host's memory cap); freeing the most recent
//! allocation, or resizing it, happens in place; other frees are no-ops, and
//! the memory goes away with the instance. A panic traps (`unreachable`),
//! which the host records as a `trap`.

use core::alloc::{GlobalAlloc, Layout};
use core::arch::wasm32;
use core::cell::Cell;
use core::ptr;

const PAGE: usize = 65536;

/// The bump allocator. `[next, end)` is the free part of the heap; `end` is 0
/// until the first allocation.
pub struct Bump {
    next: Cell<usize>,
    end: Cell<usize>,
}

// SAFETY: a component instance is single-threaded.
unsafe impl Sync for Bump {}

unsafe extern "C" {
    /// First byte after the static data and the stack (set by `wasm-ld`).
    static __heap_base: u8;
}

// `memcmp` and friends, which `core` calls and `compiler_builtins` does not
// provide on this target: wasi-libc's, which import nothing.
#[link(name = "c")]
unsafe extern "C" {}

impl Bump {
    /// An empty heap; it starts at `__heap_base` on the first allocation.
    #[allow(clippy::new_without_default)]
    pub const fn new() -> Self {
        Self { next: Cell::new(0), end: Cell::new(0) }
    }

    /// Room for `layout`, starting at the returned address.
    fn reserve(&self, layout: Layout) -> Option<usize> {
        if self.end.get() == 0 {
            self.next.set(ptr::addr_of!(__heap_base) as usize);
            self.end.set(wasm32::memory_size(0) * PAGE);
        }
        let align = layout.align();
        let start = self.next.get().checked_add(align - 1)? & !(align - 1);
        if start.checked_add(layout.size())? <= self.end.get() {
            return Some(start);
        }
        let pages = layout.size().checked_add(align)?.div_ceil(PAGE);
        let old = wasm32::memory_grow(0, pages);
        if old == usize::MAX {
            return None;
        }
        if old * PAGE != self.end.get() {
            // Not contiguous with the current heap (never happens while this
            // allocator is the only one growing memory).
            self.next.set(old * PAGE);
        }
        self.end.set((old + pages) * PAGE);
        Some(self.next.get().checked_add(align - 1)? & !(align - 1))
    }
}

unsafe impl GlobalAlloc for Bump {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match self.reserve(layout) {
            Some(start) => {
                self.next.set(start + layout.size());
                start as *mut u8
            }
            None => ptr::null_mut(),
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if ptr as usize + layout.size() == self.next.get() {
            self.next.set(ptr as usize);
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let start = ptr as usize;
        if start + layout.size() == self.next.get() && start + new_size <= self.end.get() {
            self.next.set(start + new_size);
            return ptr;
        }
        if new_size <= layout.size() {
            return ptr;
        }
        // SAFETY: the caller's contract for `realloc` covers the one for
        // `alloc` and `dealloc`; the two blocks do not overlap.
        unsafe {
            let new = self.alloc(Layout::from_size_align_unchecked(new_size, layout.align()));
            if !new.is_null() {
                ptr::copy_nonoverlapping(ptr, new, layout.size());
                self.dealloc(ptr, layout);
            }
            new
        }
    }
}

/// The canonical ABI's allocation function over `heap` (the host calls the
/// component's `cabi_realloc` export to place a call's strings and lists in
/// linear memory). `std` plugins get it from wasi-libc.
///
/// # Safety
///
/// `align` is a power of two and, when `old_len` is not 0, `old_ptr` is a
/// block of `old_len` bytes this function returned.
pub unsafe fn cabi_realloc(heap: &Bump, old_ptr: *mut u8, old_len: usize, align: usize, new_len: usize) -> *mut u8 {
    // SAFETY: see the function's contract.
    let ptr = unsafe {
        if old_len == 0 {
            if new_len == 0 {
                return align as *mut u8;
            }
            heap.alloc(Layout::from_size_align_unchecked(new_len, align))
        } else {
            heap.realloc(old_ptr, Layout::from_size_align_unchecked(old_len, align), new_len)
        }
    };
    if ptr.is_null() {
        wasm32::unreachable();
    }
    ptr
}
