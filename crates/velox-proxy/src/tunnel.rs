//! Tunnels for upgraded connections (WebSocket and other `Upgrade` protocols): bytes both ways.

use crate::transport::{OnUpgrade, Upgraded};
use tokio::io::AsyncWriteExt;

/// Joins the client's connection (once its 101 is written) with the origin's.
pub fn spawn(client: OnUpgrade, origin: Upgraded) {
    tokio::spawn(async move {
        let Some(mut client) = client.upgraded().await else {
            tracing::debug!("upgrade abandoned before the client switched");
            return;
        };
        let mut origin_io = origin.io;
        // Bytes either side sent past its head belong to the other side.
        if !client.leftover.is_empty() && origin_io.write_all(&client.leftover).await.is_err() {
            return;
        }
        if !origin.leftover.is_empty() && client.io.write_all(&origin.leftover).await.is_err() {
            return;
        }
        if let Err(e) = tokio::io::copy_bidirectional(&mut client.io, &mut origin_io).await {
            tracing::debug!(error = %e, "tunnel closed with an error");
        }
    });
}
