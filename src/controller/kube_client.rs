//! The operator's Kubernetes client, with its idle connections bounded.
//!
//! kube's own builder keeps every connection a busy moment opened: a burst of grant reconciles
//! (up to 128 at once, each a few requests) left hundreds of idle
//! HTTP/1.1 connections to the API server, each holding read and write buffers, TLS state and
//! channels — most of the operator's heap after a burst. This builds the same stack (TLS from the
//! kubeconfig or in-cluster configuration, connect/read/write timeouts, base URI, retry of
//! server errors, authentication, extra headers) on a connection pool that keeps at most
//! [`IDLE_CONNECTIONS`] idle connections and closes them after [`IDLE_TIMEOUT`].
//! Watches hold their own connections while they stream, so they are not counted here.

use std::time::Duration;

use hyper_timeout::TimeoutConnector;
use hyper_util::{
    client::legacy::{connect::HttpConnector, Builder},
    rt::TokioExecutor,
};
use kube::client::{retry::RetryPolicy, ConfigExt};
use tower::{retry::RetryLayer, BoxError, ServiceBuilder};

/// Idle connections kept for reuse: enough for the steady state (a few reconciles at a time
/// between the watches), few enough that a burst's connections are closed once it is over.
pub const IDLE_CONNECTIONS: usize = 16;

/// How long an idle connection is kept before it is closed (hyper's default is 90 s).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(20);

/// Builds a client for `config` whose pool keeps at most [`IDLE_CONNECTIONS`] idle connections.
///
/// Proxies (`proxy-url` in a kubeconfig) are not supported by this stack: the operator runs in
/// the cluster, next to the API server. A kubeconfig that names one is refused with a message
/// rather than silently bypassing the proxy.
pub fn build(config: kube::Config) -> Result<kube::Client, BuildError> {
    if let Some(proxy) = &config.proxy_url {
        return Err(BuildError::Proxy(proxy.to_string()));
    }
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    let tls = config.rustls_https_connector_with_connector(http)?;
    let mut connector = TimeoutConnector::new(tls);
    connector.set_connect_timeout(config.connect_timeout);
    connector.set_read_timeout(config.read_timeout);
    connector.set_write_timeout(config.write_timeout);
    connector.set_reset_reader_on_write(config.reset_reader_on_write);
    let pool = Builder::new(TokioExecutor::new())
        .pool_max_idle_per_host(IDLE_CONNECTIONS)
        .pool_idle_timeout(IDLE_TIMEOUT)
        .build(connector);
    let service = ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(
            config
                .default_retry
                .then(|| RetryLayer::new(RetryPolicy::server_retry())),
        )
        .option_layer(config.auth_layer()?)
        .layer(config.extra_headers_layer()?)
        .map_err(BoxError::from)
        .service(pool);
    Ok(kube::Client::new(service, config.default_namespace))
}

/// Why the client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(
        "the kubeconfig names a proxy ({0}); the operator connects to the API server directly, \
         remove proxy-url from its kubeconfig"
    )]
    Proxy(String),
    #[error(transparent)]
    Kube(#[from] kube::Error),
}
