//! Handing memory back to the system after busy moments. glibc's malloc keeps what a burst
//! (a thousand grants, a large sync) freed, in every arena a thread used, so an idle operator
//! would stay at its peak; `malloc_trim` returns the free pages. The image links musl, which
//! returns memory itself: there this does nothing.

use std::time::Duration;

/// How often free memory is handed back.
pub const TRIM_INTERVAL: Duration = Duration::from_secs(10);

/// Hand free heap memory back to the system, every [`TRIM_INTERVAL`], forever.
pub async fn trim_periodically() {
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

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}
