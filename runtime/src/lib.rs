//! What every Courier process runs on, whatever its role: the operations
//! listener (`/metrics`, `/healthz`, `/readyz`), shutdown on a signal,
//! binding listeners and advertising their addresses, the one accept loop
//! every client-facing listener runs (admission, refusals, backoff on a
//! failed accept), the login-token keys
//! logic signs with and comets verify with, the cluster secret every
//! internal gRPC call carries, TLS for listeners and links, a histogram of
//! the gRPC calls a server answers, the one retry backoff, and throttled
//! warnings.
//!
//! Nothing here talks to a cluster backend (those are `courier-cluster`), and
//! nothing here installs process-wide telemetry: the binary does that, and
//! tells [`admin`] how to render `/metrics`.

pub mod acceptor;
pub mod admin;
pub mod backoff;
pub mod cluster_auth;
pub mod grpc_metrics;
pub mod net;
pub mod per_ip;
pub mod revoked;
pub mod shutdown;
pub mod throttle;
pub mod tls;
pub mod token;

pub use admin::Readiness;
pub use cluster_auth::{ClusterSecret, MIN_SECRET_BYTES};
pub use tls::TlsConfig;
pub use token::{Claims, TokenError, TokenKeys};
