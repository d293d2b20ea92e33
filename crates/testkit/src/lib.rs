//! Test support for the resilient cache: real servers, real faults.
//!
//! - [`RedisServer`] starts a real `redis-server` on a free loopback port in a
//!   temporary directory (no persistence); it can be [killed](RedisServer::kill)
//!   and [restarted](RedisServer::restart) on the same port for outage tests.
//! - [`RedisCluster`] starts a real Redis Cluster (three masters by default).
//! - [`FaultProxy`] sits between a client and a server and adds latency, black-holes
//!   traffic, refuses or cuts connections on command.
//! - [`RawConnection`] is a tiny blocking RESP client for setup and for writing raw
//!   bytes (for example corrupt values) behind a store's back.
//! - [`http_get`] fetches a page from a test server; [`promtool`] runs Prometheus'
//!   checker on exposition text and rule files.
//! - [`eventually`] and [`eventually_async`] wait (bounded) for a condition that
//!   other tasks make true.
//!
//! Every process and thread is cleaned up when its handle drops, also when a
//! test panics. Nothing here mocks Redis.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use cache_testkit::{FaultProxy, RedisServer};
//!
//! let mut server = RedisServer::start()?;
//! server.ping()?;
//! let proxy = FaultProxy::start(server.addr())?;
//! proxy.set_latency(Duration::from_millis(250)); // clients of proxy.url() now wait
//! server.kill();                                  // and now the server is gone
//! server.restart()?;                              // back on the same port
//! # Ok::<(), cache_testkit::TestkitError>(())
//! ```
//!
//! (This example starts a real `redis-server`; `cargo xtask test` installs one.)
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod cluster;
mod error;
mod http;
mod promtool;
mod proxy;
mod resp;
mod server;
mod tls;
mod wait;

pub use cluster::RedisCluster;
pub use error::TestkitError;
pub use http::{HttpResponse, http_get};
pub use promtool::{promtool, promtool_binary};
pub use proxy::{Fault, FaultProxy};
pub use resp::{RawConnection, Reply};
pub use server::{RedisServer, free_port, redis_server_binary};
pub use tls::{TestPki, TlsServer};
pub use wait::{eventually, eventually_async};
