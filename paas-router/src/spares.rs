//! Allocations kept for the next request instead of going back to malloc: header maps (a
//! request's once its head has been encoded for the instance, a response's once its head
//! has been written to the client) and the boxes that requests' futures run in.
//!
//! Why: both are large (a map with room for a dozen headers is 1,248 bytes, a request's
//! future ~1,750). Under glibc's malloc each one took its slow path, and with it a
//! consolidation of its fast bins: three per request, ~3% of the router's CPU at 2,000
//! connections (docs/benchmarks.md). Under mimalloc, paasd's allocator since, reuse still
//! saves 3% of the instructions per request (an allocation, and a map's index built anew),
//! counted with bench/instructions.sh on 2026-12-07. What is taken from here was used
//! moments ago, so it is also still in cache.
//!
//! Per thread and bounded: at most [`KEPT`] of each, maps of at most [`LARGEST`] headers,
//! so what one burst of unusual requests leaves behind is small. Must not keep anything
//! that still holds a request's state: maps are emptied, and only the box of a future
//! that has completed (and so dropped what it held) is kept.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use hyper::header::HeaderMap;
use hyper::Response;
use tokio_util::sync::ReusableBoxFuture;

use super::body::ProxyBody;

/// Maps, and boxes, kept per thread (~330 KB and ~450 KB at most).
const KEPT: usize = 256;
/// A map with room for more headers than this is not kept.
const LARGEST: usize = 48;

type Boxed = ReusableBoxFuture<'static, Response<ProxyBody>>;

thread_local! {
    static SPARE: RefCell<Vec<HeaderMap>> = const { RefCell::new(Vec::new()) };
    static BOXES: RefCell<Vec<Boxed>> = const { RefCell::new(Vec::new()) };
}

/// An empty map with room for `headers` headers.
pub(crate) fn take(headers: usize) -> HeaderMap {
    match SPARE.with(|s| s.borrow_mut().pop()) {
        Some(mut map) => {
            map.reserve(headers);
            map
        }
        None => HeaderMap::with_capacity(headers),
    }
}

/// Keeps `map` for a later message, if there is room for it.
pub(crate) fn give_back(mut map: HeaderMap) {
    if map.capacity() > LARGEST {
        return;
    }
    map.clear();
    SPARE.with(|s| {
        let mut s = s.borrow_mut();
        if s.len() < KEPT {
            s.push(map);
        }
    });
}

/// A request's future, in a box that goes back to this thread's spares once it has
/// completed. (One dropped before that, a request the client gave up on, takes its box
/// with it: the future in it still holds the request.)
pub(crate) struct Request {
    boxed: Option<Boxed>,
    done: bool,
}

impl Request {
    pub fn new<F>(future: F) -> Request
    where
        F: Future<Output = Response<ProxyBody>> + Send + 'static,
    {
        let boxed = match BOXES.with(|b| b.borrow_mut().pop()) {
            Some(mut boxed) => {
                // Reallocates only if `future` is not the size of the one before.
                boxed.set(future);
                boxed
            }
            None => ReusableBoxFuture::new(future),
        };
        Request {
            boxed: Some(boxed),
            done: false,
        }
    }
}

impl Future for Request {
    type Output = Response<ProxyBody>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let Some(boxed) = &mut this.boxed else {
            return Poll::Pending;
        };
        let out = boxed.poll(cx);
        this.done = out.is_ready();
        out
    }
}

impl Drop for Request {
    fn drop(&mut self) {
        if !self.done {
            return;
        }
        if let Some(boxed) = self.boxed.take() {
            BOXES.with(|b| {
                let mut b = b.borrow_mut();
                if b.len() < KEPT {
                    b.push(boxed);
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::{HeaderValue, HOST};

    #[test]
    fn a_map_given_back_comes_back_empty_with_its_room() {
        let mut map = take(9);
        map.insert(HOST, HeaderValue::from_static("a.example"));
        let room = map.capacity();
        give_back(map);
        let again = take(2);
        assert!(again.is_empty(), "a reused map still had {again:?}");
        assert_eq!(again.capacity(), room, "not the map given back");
    }

    #[test]
    fn a_large_map_is_not_kept() {
        let map = HeaderMap::with_capacity(200);
        give_back(map);
        assert!(take(1).capacity() < 200);
    }
}
