//! The per-request routing pieces allocate nothing: classify, query_param and hrw::pick run
//! under a counting global allocator that counts only on the calling thread.
//!
//! Its own test binary, because a `#[global_allocator]` applies to the whole binary.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

use http::Method;

use officeswitch::proxy::classify::{Class, classify, query_param};
use officeswitch::sticky::hrw;

/// Counts allocations made by threads that switched counting on.
struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

fn note() {
    // `try_with`: the thread-local may be gone while a thread is torn down.
    if COUNTING.try_with(Cell::get).unwrap_or(false) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: every call is forwarded unchanged to the system allocator.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations `f` makes on this thread.
fn allocations<T>(f: impl FnOnce() -> T) -> (usize, T) {
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    COUNTING.with(|c| c.set(true));
    let out = f();
    COUNTING.with(|c| c.set(false));
    (ALLOCATIONS.load(Ordering::Relaxed) - before, out)
}

const REQUESTS: &[(&str, &str, Option<&str>, bool)] = &[
    (
        "GET",
        "/cool/http%3A%2F%2Fnc%2Fwopi%2Ffiles%2F1/ws",
        Some("WOPISrc=http%3A%2F%2Fnc%2Fwopi%2Ffiles%2F1&compat=/ws"),
        true,
    ),
    (
        "GET",
        "/cool/ws",
        Some("WOPISrc=http%3A%2F%2Fnc%2Fwopi%2Ffiles%2F1"),
        true,
    ),
    (
        "POST",
        "/browser/61cf2b4/cool.html",
        Some("WOPISrc=http%3A%2F%2Fnc%2Fwopi%2Ffiles%2F1"),
        false,
    ),
    ("GET", "/browser/61cf2b4/bundle.js", None, false),
    (
        "GET",
        "/9.3.1-abc/web-apps/apps/api/documents/api.js",
        None,
        false,
    ),
    (
        "GET",
        "/doc/8f2b1e0c7a/c/",
        Some("EIO=4&transport=websocket&WOPISrc=http%3A%2F%2Fnc%2Fwopi%2Ffiles%2F1"),
        true,
    ),
    (
        "POST",
        "/hosting/wopi/word/edit",
        Some("wopisrc=x&usid=y"),
        false,
    ),
    (
        "GET",
        "/cache/files/data/k/output.docx/output.docx",
        Some("shardkey=k"),
        false,
    ),
    ("POST", "/cool/convert-to/pdf", None, false),
    (
        "POST",
        "/officeswitch/open/ext/docx/edit",
        Some("WOPISrc=x"),
        false,
    ),
    ("GET", "/hosting/discovery", None, false),
    ("GET", "/cool/getMetrics", None, false),
    ("GET", "/doc/..%2F..%2Finfo/info.json", None, false),
    ("DELETE", "/cool/clipboard", None, false),
];

#[test]
fn classify_query_param_and_pick_allocate_nothing() {
    let methods: Vec<(&str, Method)> = ["GET", "POST", "DELETE"]
        .into_iter()
        .map(|m| (m, m.parse().expect("method")))
        .collect();
    let nodes: Vec<String> = (1..=10)
        .map(|i| format!("http://collabora-{i}:9980/"))
        .collect();
    let key = "https://nc.example.com:443/index.php/apps/richdocuments/wopi/files/4242_oc";

    let (count, editor_requests) = allocations(|| {
        let mut editor_requests = 0;
        for &(name, path, query, upgrade) in REQUESTS {
            let method = &methods.iter().find(|(n, _)| *n == name).expect("method").1;
            if let Class::Editor(request) = classify(method, path, query, upgrade) {
                editor_requests += 1;
                if let Some(k) = request.key {
                    assert!(hrw::pick(k.as_bytes(), &nodes).is_some());
                }
            }
            if let Some(q) = query {
                std::hint::black_box(query_param(q, "WOPISrc"));
            }
        }
        assert!(hrw::pick(key.as_bytes(), &nodes[..3]).is_some());
        assert!(hrw::pick_where(key.as_bytes(), &nodes, |i| i % 2 == 0).is_some());
        editor_requests
    });
    assert_eq!(editor_requests, 9);
    assert_eq!(count, 0, "routing allocated {count} times");

    // The counter works: an allocation is seen.
    let (count, v) = allocations(|| vec![1u8; 16]);
    assert_eq!((count, v.len()), (1, 16));
}
