//! `POST /v1/triggers` with a million-item array is refused without building the items:
//! the process's peak heap while the request is read and refused stays far below what a
//! million JSON values would take. Alone in its test binary, since it counts every
//! allocation of the process.

mod serve_support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use reqwest::StatusCode;
use serve_support::*;

/// The system allocator, counting live bytes and their peak.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is to the system allocator.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as is to the system allocator.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

#[tokio::test]
async fn a_million_item_batch_is_refused_without_building_it() {
    let sandbox = sandbox(gcx_sandbox::Faults::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let config = config(&sandbox, dir.path());
    let service = start_service(&sandbox, &config).await;
    let body = format!("[{}{{}}]", "{},".repeat(999_999));
    let http = client();
    let request = http
        .post(format!("{}/v1/triggers", service.url()))
        .bearer_auth(KEY)
        .header("content-type", "application/json")
        .body(body);

    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let grown = PEAK.load(Ordering::Relaxed).saturating_sub(before);
    // The body itself is 3 MB (the client's copy and the server's); a million values
    // would be hundreds of MB.
    assert!(
        grown < 32 << 20,
        "the refusal took {} MiB of heap",
        grown >> 20
    );
    service.shutdown().await;
}
