//! Document placement as `App::new` builds it (health, topology, pins over a store),
//! without a server: for tests that drive placement directly. Health checks never run;
//! every node starts healthy.

use std::sync::Arc;
use std::time::Duration;

use officeswitch::config::{HealthConfig, PinStoreConfig, PinsConfig, PoolConfig};
use officeswitch::sticky::health::Health;
use officeswitch::sticky::pins::Stickiness;
use officeswitch::sticky::store;
use officeswitch::topology::TopologyStore;

/// Placement over `pools` with pins in `store` (each call bounded by `store_timeout`);
/// `fall` failures mark a node down.
pub fn placement(
    pools: Vec<PoolConfig>,
    store: PinStoreConfig,
    store_timeout: Duration,
    fall: u32,
) -> Arc<Stickiness> {
    let health = Health::new(
        &pools,
        &HealthConfig {
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(2),
            fall,
            rise: 1,
        },
    );
    let pins = PinsConfig {
        store,
        ttl: Duration::from_secs(3600),
        timeout: store_timeout,
        refresh: Duration::from_secs(2),
    };
    let topology = TopologyStore::of(pools, "officeswitch.toml".into());
    Stickiness::new(
        store::open(&pins).expect("pin store"),
        health,
        topology,
        &pins,
    )
}
