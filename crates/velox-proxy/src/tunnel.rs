//! Tunnels for upgraded connections (WebSocket and other `Upgrade` protocols): bytes both ways.

use crate::transport::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;

pub fn spawn(client: OnUpgrade, origin: hyper::upgrade::OnUpgrade) {
    tokio::spawn(async move {
        let (Some(mut client), Ok(origin)) = (client.upgraded().await, origin.await) else {
            tracing::debug!("upgrade abandoned before both sides switched");
            return;
        };
        let mut origin = TokioIo::new(origin);
        if !client.leftover.is_empty() && origin.write_all(&client.leftover).await.is_err() {
            return;
        }
        if let Err(e) = tokio::io::copy_bidirectional(&mut client.io, &mut origin).await {
            tracing::debug!(error = %e, "tunnel closed with an error");
        }
    });
}
