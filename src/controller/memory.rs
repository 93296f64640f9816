//! Handing memory back to the system after busy moments. glibc's malloc keeps what a burst
//! (a thousand grants, a large sync) freed, in every arena a thread used, so an idle operator
//! would stay at its peak; `malloc_trim` returns the free pages. The image links musl, which
//! returns memory itself: there this does nothing.

use std::time::Duration;

/// How often free memory is handed back.
pub const TRIM_INTERVAL: Duration = Duration::from_secs(10);

/// Blocks at least this large get pages of their own, handed back as soon as they are freed.
pub const MMAP_THRESHOLD: usize = 128 * 1024;

/// Hand free heap memory back to the system, every [`TRIM_INTERVAL`], forever. Large blocks
/// (a sync's 10,000 users as JSON, an inventory's shards) are mapped apart from the heap from
/// the start: glibc would otherwise raise its threshold after the first one is freed and carve
/// the next ones out of the arenas, where what stays alive between them pins the pages.
pub async fn trim_periodically() {
    tune();
    loop {
        tokio::time::sleep(TRIM_INTERVAL).await;
        trim();
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim() {
    // SAFETY: malloc_trim only releases free pages of glibc's heap; it is thread-safe.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tune() {
    // SAFETY: mallopt only changes glibc's allocation policy; it is thread-safe. A fixed
    // threshold also turns off glibc's dynamic raising of it.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD as libc::c_int);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune() {}
