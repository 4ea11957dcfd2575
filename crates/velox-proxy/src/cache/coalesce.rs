//! Request coalescing: one origin fetch per key, its body fanned out to every waiting client
//! as it arrives. Readers see chunks as they are appended, never the whole body at the end.

use crate::body::{Body, BoxError};
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::Notify;

/// The head every reader of a shared fetch answers with.
#[derive(Debug, Clone)]
pub struct SharedHead {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub length: u64,
    /// The leader's secondary key under the response's Vary: a follower may share the
    /// response only if its own request selects the same variant (RFC 9111 §4.1).
    secondary: Option<String>,
}

impl SharedHead {
    pub fn new(
        status: StatusCode,
        headers: HeaderMap,
        length: u64,
        leader_request: &HeaderMap,
    ) -> Self {
        let secondary =
            velox_cache::policy::secondary_key(headers.get_all(http::header::VARY), leader_request);
        SharedHead {
            status,
            headers,
            length,
            secondary,
        }
    }

    pub fn matches(&self, request: &HeaderMap) -> bool {
        let mine =
            velox_cache::policy::secondary_key(self.headers.get_all(http::header::VARY), request);
        mine.is_some() && mine == self.secondary
    }
}

#[derive(Debug, Clone)]
enum HeadState {
    Pending,
    Shared(Arc<SharedHead>),
    /// The response may not be shared (not storable): followers fetch for themselves.
    NotShared,
}

struct State {
    head: HeadState,
    chunks: Vec<Bytes>,
    end: Option<Result<(), String>>,
}

pub struct Inflight {
    state: Mutex<State>,
    changed: Notify,
}

impl Inflight {
    fn new() -> Inflight {
        Inflight {
            state: Mutex::new(State {
                head: HeadState::Pending,
                chunks: Vec::new(),
                end: None,
            }),
            changed: Notify::new(),
        }
    }

    /// A fetch nobody else can join (a revalidation, or a follower's own fetch).
    pub fn detached() -> Arc<Inflight> {
        Arc::new(Inflight::new())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn update(&self, f: impl FnOnce(&mut State)) {
        f(&mut self.lock());
        self.changed.notify_waiters();
    }

    pub fn share(&self, head: SharedHead) {
        self.update(|s| s.head = HeadState::Shared(Arc::new(head)));
    }

    pub fn push(&self, chunk: Bytes) {
        self.update(|s| s.chunks.push(chunk));
    }

    pub fn finish(&self, result: Result<(), String>) {
        self.update(|s| s.end = Some(result));
    }

    /// Waits for the leader's decision: the shared head, or `None` when the followers are on their own.
    pub async fn head(&self) -> Option<Arc<SharedHead>> {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match &self.lock().head {
                HeadState::Shared(head) => return Some(head.clone()),
                HeadState::NotShared => return None,
                HeadState::Pending => {}
            }
            notified.await;
        }
    }

    /// Waits until the whole body has arrived; `false` if the fetch failed.
    pub async fn complete(&self) -> bool {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(result) = &self.lock().end {
                return result.is_ok();
            }
            notified.await;
        }
    }

    /// A body that streams the shared fetch from its first byte, following it as it grows.
    pub fn reader(self: &Arc<Self>) -> Body {
        let stream =
            futures_util::stream::unfold((self.clone(), 0usize), |(inflight, next)| async move {
                if next == usize::MAX {
                    return None;
                }
                loop {
                    let notified = inflight.changed.notified();
                    tokio::pin!(notified);
                    notified.as_mut().enable();
                    {
                        let state = inflight.lock();
                        if let Some(chunk) = state.chunks.get(next) {
                            let frame: Result<Frame<Bytes>, BoxError> =
                                Ok(Frame::data(chunk.clone()));
                            return Some((frame, (inflight.clone(), next + 1)));
                        }
                        match &state.end {
                            Some(Ok(())) => return None,
                            Some(Err(e)) => {
                                let error: BoxError = e.clone().into();
                                return Some((Err(error), (inflight.clone(), usize::MAX)));
                            }
                            None => {}
                        }
                    }
                    notified.await;
                }
            });
        StreamBody::new(stream).boxed_unsync()
    }
}

/// Who handles a request for a key that is not in the cache.
pub enum Role {
    /// Fetch from the origin; the guard releases followers if dropped undecided.
    Leader(LeaderGuard),
    Follower(Arc<Inflight>),
}

#[derive(Default)]
pub struct Coalescer {
    inflight: Mutex<HashMap<String, Arc<Inflight>>>,
}

impl Coalescer {
    fn map(&self) -> MutexGuard<'_, HashMap<String, Arc<Inflight>>> {
        self.inflight
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn join(self: &Arc<Self>, key: &str) -> Role {
        let mut map = self.map();
        if let Some(existing) = map.get(key) {
            return Role::Follower(existing.clone());
        }
        let inflight = Arc::new(Inflight::new());
        map.insert(key.to_owned(), inflight.clone());
        Role::Leader(LeaderGuard {
            key: key.to_owned(),
            coalescer: self.clone(),
            inflight,
        })
    }

    #[cfg(test)]
    pub fn in_flight(&self) -> usize {
        self.map().len()
    }
}

pub struct LeaderGuard {
    key: String,
    coalescer: Arc<Coalescer>,
    pub inflight: Arc<Inflight>,
}

impl LeaderGuard {
    /// Followers fetch for themselves; new requests no longer join this fetch.
    #[cfg(test)]
    pub fn release(self) {}
}

impl Drop for LeaderGuard {
    fn drop(&mut self) {
        {
            let mut map = self.coalescer.map();
            if map
                .get(&self.key)
                .is_some_and(|i| Arc::ptr_eq(i, &self.inflight))
            {
                map.remove(&self.key);
            }
        }
        self.inflight.update(|s| {
            if matches!(s.head, HeadState::Pending) {
                s.head = HeadState::NotShared;
            }
            if s.end.is_none() && matches!(s.head, HeadState::Shared(_)) {
                s.end = Some(Err("shared origin fetch abandoned".into()));
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn followers_join_and_stream_as_chunks_arrive() {
        let coalescer = Arc::new(Coalescer::default());
        let Role::Leader(leader) = coalescer.join("k") else {
            panic!("first is leader")
        };
        let Role::Follower(follower) = coalescer.join("k") else {
            panic!("second follows")
        };
        leader.inflight.share(SharedHead::new(
            StatusCode::OK,
            HeaderMap::new(),
            4,
            &HeaderMap::new(),
        ));
        assert!(follower.head().await.is_some());
        let mut body = follower.reader();
        leader.inflight.push(Bytes::from_static(b"ab"));
        let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(first, "ab");
        leader.inflight.push(Bytes::from_static(b"cd"));
        leader.inflight.finish(Ok(()));
        drop(leader);
        let rest = body.collect().await.unwrap().to_bytes();
        assert_eq!(rest, "cd");
        assert_eq!(coalescer.in_flight(), 0);
    }

    #[tokio::test]
    async fn dropped_leader_releases_followers() {
        let coalescer = Arc::new(Coalescer::default());
        let Role::Leader(leader) = coalescer.join("k") else {
            panic!()
        };
        let Role::Follower(follower) = coalescer.join("k") else {
            panic!()
        };
        leader.release();
        assert!(follower.head().await.is_none());
        assert!(matches!(coalescer.join("k"), Role::Leader(_)));
    }
}
