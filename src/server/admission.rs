//! Who may hold a connection: limits that keep other clients served while one client
//! opens many.
//!
//! Each client connection holds a file descriptor (and while it is proxied, often an
//! upstream one). Without limits one client holding a thousand idle HTTP/2 connections
//! starved every other client of descriptors. So a connection is admitted only below
//! `max_connections` in all and `max_connections_per_client` from its address; one over
//! either is closed at once, counted in `officeswitch_connections_refused_total` and
//! logged at most once per 10 s per limit (an attack must not flood the log).

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use tracing::warn;

/// Shortest time between two log lines about one limit.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// The process start, the epoch of [`Admission`]'s log timestamps.
static STARTED: LazyLock<Instant> = LazyLock::new(Instant::now);

/// The connection limits and what holds them now.
#[derive(Debug)]
pub struct Admission {
    max_total: usize,
    max_per_client: Option<usize>,
    total: AtomicUsize,
    per_client: DashMap<IpAddr, usize>,
    /// Milliseconds since [`STARTED`] of the last log line, per limit.
    logged_total: AtomicU64,
    logged_per_client: AtomicU64,
}

/// Which limit refused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// All clients together hold `max_connections`.
    Total,
    /// This address holds `max_connections_per_client`.
    PerClient,
}

impl Refused {
    /// The metric label and the setting to raise.
    pub fn as_str(self) -> &'static str {
        match self {
            Refused::Total => "max_connections",
            Refused::PerClient => "max_connections_per_client",
        }
    }
}

/// One admitted connection; dropping it (the connection ended) frees its place.
#[derive(Debug)]
pub struct Admitted {
    admission: Arc<Admission>,
    client: IpAddr,
}

impl Admission {
    /// Limits of `max_total` connections, `max_per_client` from one address (`None`: no
    /// per-address limit).
    pub fn new(max_total: usize, max_per_client: Option<usize>) -> Arc<Admission> {
        LazyLock::force(&STARTED);
        Arc::new(Admission {
            max_total,
            max_per_client,
            total: AtomicUsize::new(0),
            per_client: DashMap::new(),
            logged_total: AtomicU64::new(0),
            logged_per_client: AtomicU64::new(0),
        })
    }

    /// Admits a connection from `client`, or says which limit it meets (counted and,
    /// rate-limited, logged).
    ///
    /// # Errors
    /// The limit that is reached.
    pub fn admit(self: &Arc<Self>, client: IpAddr) -> Result<Admitted, Refused> {
        let refused = self.try_admit(client);
        if let Err(limit) = refused {
            crate::metrics::global().connection_refused(limit.as_str());
            self.log(limit, client);
        }
        refused
    }

    fn try_admit(self: &Arc<Self>, client: IpAddr) -> Result<Admitted, Refused> {
        if self.total.fetch_add(1, Ordering::AcqRel) >= self.max_total {
            self.total.fetch_sub(1, Ordering::AcqRel);
            return Err(Refused::Total);
        }
        if let Some(limit) = self.max_per_client {
            let mut held = self.per_client.entry(client).or_insert(0);
            if *held >= limit {
                drop(held);
                self.total.fetch_sub(1, Ordering::AcqRel);
                return Err(Refused::PerClient);
            }
            *held += 1;
        }
        crate::metrics::global().connections_open().inc();
        Ok(Admitted {
            admission: Arc::clone(self),
            client,
        })
    }

    /// Connections held now.
    pub fn held(&self) -> usize {
        self.total.load(Ordering::Acquire)
    }

    fn log(&self, limit: Refused, client: IpAddr) {
        let last = match limit {
            Refused::Total => &self.logged_total,
            Refused::PerClient => &self.logged_per_client,
        };
        let now = u64::try_from(STARTED.elapsed().as_millis()).unwrap_or(u64::MAX);
        let previous = last.load(Ordering::Relaxed);
        let due = previous == 0 || now.saturating_sub(previous) >= LOG_EVERY.as_millis() as u64;
        if due
            && last
                .compare_exchange(previous, now.max(1), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            warn!(
                limit = limit.as_str(),
                %client,
                "connection limit reached: closing new connections (logged once per 10 s)"
            );
        }
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let admission = &self.admission;
        if admission.max_per_client.is_some() {
            // Remove the address once it holds nothing, so the map stays as small as the
            // set of clients connected now.
            admission.per_client.remove_if_mut(&self.client, |_, held| {
                *held -= 1;
                *held == 0
            });
        }
        admission.total.fetch_sub(1, Ordering::AcqRel);
        crate::metrics::global().connections_open().dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2));

    #[test]
    fn one_client_cannot_take_every_place() {
        let admission = Admission::new(5, Some(2));
        let a1 = admission.admit(A).unwrap();
        let _a2 = admission.admit(A).unwrap();
        assert_eq!(admission.admit(A).unwrap_err(), Refused::PerClient);
        let _b1 = admission.admit(B).unwrap();
        drop(a1);
        let _a3 = admission
            .admit(A)
            .expect("a place freed by a closed connection");
        assert_eq!(admission.held(), 3);
    }

    #[test]
    fn the_total_holds_for_everyone_and_frees_on_close() {
        let admission = Admission::new(2, None);
        let first = admission.admit(A).unwrap();
        let _second = admission.admit(B).unwrap();
        assert_eq!(admission.admit(B).unwrap_err(), Refused::Total);
        drop(first);
        assert!(admission.admit(A).is_ok());
        assert!(
            admission.per_client.is_empty(),
            "no per-address bookkeeping"
        );
    }

    #[test]
    fn addresses_leave_the_map_when_they_close_everything() {
        let admission = Admission::new(10, Some(3));
        let held: Vec<Admitted> = (0..3).map(|_| admission.admit(A).unwrap()).collect();
        assert_eq!(admission.per_client.get(&A).map(|h| *h), Some(3));
        drop(held);
        assert!(admission.per_client.get(&A).is_none());
        assert_eq!(admission.held(), 0);
    }
}
