//! The S3 listener: the shared accept loop (`nimbus_serve`: timeouts, connection caps,
//! graceful drain) around the S3 service.

use std::future::Future;

use tokio::net::TcpListener;

/// Serves the S3 API on `listener` under the listener settings `config` until `shutdown`
/// resolves, then drains.
pub async fn serve(
    listener: TcpListener,
    service: crate::guard::GuardedS3,
    config: nimbus_serve::ServeConfig,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let connection = move |stream, _peer| (stream, service.clone());
    nimbus_serve::serve("s3", listener, &config, connection, shutdown).await
}
