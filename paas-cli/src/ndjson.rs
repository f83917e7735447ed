//! Streamed NDJSON answers (deploy, run, logs): opening one (a refusal becomes paasd's own
//! error) and cutting its body into lines as chunks arrive. Must not know what the lines
//! mean: each command decodes its own events.

use anyhow::Result;
use bytes::{Buf, Bytes};
use http_body_util::BodyExt;
use paas_api::client::{self, Body};
use paas_api::Method;

use crate::commands::Ctx;

/// Sends a request whose successful answer is a stream; a refusal comes back as the error.
pub async fn open(
    ctx: &Ctx,
    method: Method,
    path: &str,
    body: Option<Bytes>,
) -> Result<Lines<client::Incoming>> {
    let resp = ctx
        .client
        .send(method, path, body, "application/json")
        .await?;
    let status = resp.status();
    let body = resp.into_body();
    if !status.is_success() {
        let bytes = body.collect().await?.to_bytes();
        return Err(client::api_error(status, &bytes).into());
    }
    Ok(Lines::new(body))
}

/// A body cut into lines (without their newlines).
pub struct Lines<B> {
    body: B,
    pending: Vec<u8>,
}

impl<B> Lines<B>
where
    B: Body + Unpin,
    B::Data: Buf,
    B::Error: std::fmt::Display,
{
    pub fn new(body: B) -> Lines<B> {
        Lines {
            body,
            pending: Vec::new(),
        }
    }

    /// The complete lines that arrived with the next chunk (possibly none); at the end, a last
    /// line without its newline; `None` once the body is over. A broken body is an error.
    pub async fn next_batch(&mut self) -> Result<Option<Vec<Vec<u8>>>> {
        let Some(frame) = self.body.frame().await else {
            if self.pending.is_empty() {
                return Ok(None);
            }
            return Ok(Some(vec![std::mem::take(&mut self.pending)]));
        };
        let frame = frame.map_err(|e| anyhow::anyhow!("reading paasd's answer: {e}"))?;
        if let Ok(mut data) = frame.into_data() {
            let data = data.copy_to_bytes(data.remaining());
            self.pending.extend_from_slice(&data);
        }
        let Some(last) = self.pending.iter().rposition(|b| *b == b'\n') else {
            return Ok(Some(Vec::new()));
        };
        let complete: Vec<u8> = self.pending.drain(..=last).collect();
        Ok(Some(
            complete[..complete.len() - 1]
                .split(|b| *b == b'\n')
                .map(<[u8]>::to_vec)
                .collect(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use paas_api::client::Frame;
    use std::collections::VecDeque;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    /// A body that hands out its chunks one frame at a time.
    struct Chunks(VecDeque<&'static str>);

    impl Body for Chunks {
        type Data = Bytes;
        type Error = std::io::Error;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
            Poll::Ready(self.0.pop_front().map(|c| Ok(Frame::data(Bytes::from(c)))))
        }
    }

    #[tokio::test]
    async fn lines_cross_chunk_borders_and_a_last_line_needs_no_newline() {
        let mut lines = Lines::new(Chunks(["a\nb", "c\n", "\nd"].into()));
        let mut all = Vec::new();
        while let Some(batch) = lines.next_batch().await.expect("no error") {
            all.extend(
                batch
                    .into_iter()
                    .map(|l| String::from_utf8(l).expect("utf8")),
            );
        }
        assert_eq!(all, ["a", "bc", "", "d"]);
    }
}
