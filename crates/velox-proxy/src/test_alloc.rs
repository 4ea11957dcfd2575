//! For unit tests that measure memory: the system allocator, counting what each thread has
//! allocated and not yet freed (per thread, so that tests running beside each other do not
//! disturb the count).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
}

fn add(bytes: isize) {
    // Not during the thread's teardown, when its counter may be gone.
    let _ = LIVE.try_with(|live| live.set(live.get() + bytes));
}

struct Counting;

// SAFETY: every call is passed to the system allocator unchanged; counting has no effect on it.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        add(layout.size() as isize);
        System.alloc(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        add(-(layout.size() as isize));
        System.dealloc(ptr, layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        add(new_size as isize - layout.size() as isize);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

/// Runs `make` and returns the bytes what it made still holds (allocated on this thread and not
/// freed by its return), with what it made.
pub fn allocated_by<T>(make: impl FnOnce() -> T) -> (usize, T) {
    let before = LIVE.with(Cell::get);
    let made = make();
    let after = LIVE.with(Cell::get);
    (usize::try_from(after - before).unwrap_or(0), made)
}
