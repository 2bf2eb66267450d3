//! One gateway connection, from its CONNECT to its end.
//!
//! Tasks per connection, all ended together: the gateway reader (this
//! function's loop), a writer to the gateway, a writer to the broker, a
//! reader of the broker, the acknowledger (receipts in order, then PUBACK)
//! and a pinger keeping the loopback session alive while readings, which
//! the broker never sees, are the gateway's only traffic.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::Shared;
use super::acl::{self, Route};
use super::codec::{self, ConnectRefusal, Dialect, FrameError, read_frame};
use crate::store::Receipt;

/// Frames waiting for each writer.
const WRITE_QUEUE: usize = 256;
/// MQTT 5 topic aliases remembered per connection.
const MAX_ALIASES: usize = 1024;

pub async fn run<S>(
    stream: S,
    peer: SocketAddr,
    listener: &'static str,
    certified: Option<String>,
    shared: &Shared,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut gw_read, mut gw_write) = tokio::io::split(stream);
    let mut buf = BytesMut::with_capacity(4096);
    let first = tokio::time::timeout(
        shared.connect_timeout,
        read_frame(&mut gw_read, &mut buf, shared.max_packet),
    )
    .await;
    let frame = match first {
        Ok(Ok(Some(frame))) => frame,
        Ok(Ok(None)) => return,
        Ok(Err(err)) => {
            tracing::warn!(%peer, listener, "MQTT connection refused: {err}");
            return;
        }
        Err(_) => {
            shared.metrics.mqtt_handshake_failures.fetch_add(1, Relaxed);
            tracing::warn!(%peer, listener, "no MQTT CONNECT in time; connection dropped");
            return;
        }
    };
    let connected = Dialect::of_connect(&frame)
        .and_then(|dialect| Ok((dialect, dialect.connect(&frame, shared.max_packet)?)));
    let (dialect, connect) = match connected {
        Ok(connected) => connected,
        Err(err) => {
            tracing::warn!(%peer, listener, "MQTT CONNECT refused: {err}");
            return;
        }
    };
    let gateway = match admit(&connect, certified.as_deref(), shared).await {
        Ok(gateway) => gateway,
        Err(refusal) => {
            tracing::warn!(
                %peer,
                listener,
                client_id = %connect.client_id,
                ?refusal,
                "MQTT CONNECT refused"
            );
            let _ = gw_write.write_all(&dialect.connack_refused(refusal)).await;
            let _ = gw_write.shutdown().await;
            return;
        }
    };

    // The broker's session, on loopback, logged in with the front's secret.
    let backend = match dialect {
        Dialect::V4 => shared.backend.v4,
        Dialect::V5 => shared.backend.v5,
    };
    let relogged =
        dialect.connect_with_login(&frame, shared.max_packet, &gateway, &shared.backend.secret);
    let broker = match (relogged, TcpStream::connect(backend).await) {
        (Ok(relogged), Ok(mut broker)) => {
            let _ = broker.set_nodelay(true);
            match broker.write_all(&relogged).await {
                Ok(()) => broker,
                Err(err) => return unavailable(&mut gw_write, dialect, &gateway, &err).await,
            }
        }
        (Err(err), _) => return unavailable(&mut gw_write, dialect, &gateway, &err).await,
        (_, Err(err)) => return unavailable(&mut gw_write, dialect, &gateway, &err).await,
    };
    shared.metrics.mqtt_front_sessions.fetch_add(1, Relaxed);
    let (mut broker_read, mut broker_write) = broker.into_split();

    let mut tasks = JoinSet::new();
    let (to_gateway, mut gateway_out) = mpsc::channel::<Bytes>(WRITE_QUEUE);
    let (to_broker, mut broker_out) = mpsc::channel::<Bytes>(WRITE_QUEUE);
    tasks.spawn(async move {
        let mut frames = Vec::with_capacity(WRITE_QUEUE);
        let mut coalesced = BytesMut::new();
        while gateway_out.recv_many(&mut frames, WRITE_QUEUE).await > 0 {
            if write_coalesced(&mut gw_write, frames.drain(..), &mut coalesced)
                .await
                .is_err()
            {
                return;
            }
        }
    });
    tasks.spawn(async move {
        while let Some(frame) = broker_out.recv().await {
            if broker_write.write_all(&frame).await.is_err() {
                return;
            }
            if codec::packet_type(&frame) == codec::DISCONNECT {
                // A clean end: the broker drops the will.
                let _ = broker_write.shutdown().await;
                return;
            }
        }
    });
    let max_packet = shared.max_packet;
    let from_broker = to_gateway.clone();
    tasks.spawn(async move {
        let mut buf = BytesMut::with_capacity(4096);
        while let Ok(Some(frame)) = read_frame(&mut broker_read, &mut buf, max_packet).await {
            // The front answers the gateway's pings; the broker's answers
            // are to the front's own.
            if codec::packet_type(&frame) == codec::PINGRESP {
                continue;
            }
            if from_broker.send(frame).await.is_err() {
                return;
            }
        }
    });
    let ping_every = Duration::from_secs(u64::from(connect.keep_alive.max(2)) / 2);
    let pinger = to_broker.clone();
    tasks.spawn(async move {
        let mut ticks = tokio::time::interval(ping_every);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            if pinger
                .send(Bytes::from_static(&codec::PINGREQ_FRAME))
                .await
                .is_err()
            {
                return;
            }
        }
    });
    let (pending, mut receipts) = mpsc::channel::<(u8, u16, Receipt)>(shared.max_inflight);
    let acks = to_gateway.clone();
    let metrics = shared.metrics.clone();
    let refused_gateway = gateway.clone();
    tasks.spawn(async move {
        while let Some((qos, pkid, receipt)) = receipts.recv().await {
            if !receipt.safe().await {
                // Not acknowledged: the gateway sends it again when it
                // reconnects, which closing the connection brings about.
                metrics.mqtt_unacknowledged.fetch_add(1, Relaxed);
                tracing::warn!(
                    gateway = %refused_gateway,
                    "a reading could not be made durable; closing the connection so the gateway sends it again"
                );
                return;
            }
            if acks.send(dialect.ack(qos, pkid, false)).await.is_err() {
                return;
            }
        }
    });

    let reader = Reader {
        dialect,
        gateway: &gateway,
        peer,
        shared,
        to_gateway,
        to_broker,
        pending,
        aliases: HashMap::new(),
        exactly_once: HashSet::new(),
    };
    let keep_alive = (connect.keep_alive > 0)
        .then(|| Duration::from_millis(u64::from(connect.keep_alive) * 1500));
    tokio::select! {
        () = reader.run(gw_read, buf, keep_alive) => {}
        _ = tasks.join_next() => {}
        () = shared.shutdown.cancelled() => {}
    }
    tasks.abort_all();
    shared.metrics.mqtt_front_sessions.fetch_sub(1, Relaxed);
    tracing::debug!(%gateway, listener, "MQTT session ended");
}

/// Frames up to this size are gathered into one write with their
/// neighbours; larger ones go out as they are.
const COALESCE_BYTES: usize = 16 * 1024;

/// Writes `frames` in as few writes as they fit: one group commit releases
/// a whole burst of PUBACKs, which would otherwise cost a system call (and
/// under TLS a record) each.
async fn write_coalesced<W: AsyncWrite + Unpin>(
    writer: &mut W,
    frames: impl Iterator<Item = Bytes>,
    coalesced: &mut BytesMut,
) -> std::io::Result<()> {
    for frame in frames {
        if !coalesced.is_empty() && coalesced.len() + frame.len() > COALESCE_BYTES {
            writer.write_all(coalesced).await?;
            coalesced.clear();
        }
        if frame.len() > COALESCE_BYTES {
            writer.write_all(&frame).await?;
        } else {
            coalesced.extend_from_slice(&frame);
        }
    }
    if !coalesced.is_empty() {
        writer.write_all(coalesced).await?;
        coalesced.clear();
    }
    Ok(())
}

async fn unavailable<W: AsyncWrite + Unpin>(
    gw_write: &mut W,
    dialect: Dialect,
    gateway: &str,
    err: &(dyn std::fmt::Display + Sync),
) {
    tracing::error!(%gateway, "cannot open the gateway's session on the embedded broker: {err}");
    let _ = gw_write
        .write_all(&dialect.connack_refused(ConnectRefusal::Unavailable))
        .await;
}

/// Who the CONNECT is: the certificate's gateway (TLS), which the client
/// id must name, and the password check when credentials are required.
/// With `mqtt.allow_anonymous` the client id is taken as the gateway id.
async fn admit(
    connect: &codec::ConnectInfo,
    certified: Option<&str>,
    shared: &Shared,
) -> Result<String, ConnectRefusal> {
    let gateway = connect.client_id.clone();
    if certified.is_some_and(|certified| certified != gateway) {
        return Err(ConnectRefusal::NotAuthorized);
    }
    if let Some(checker) = &shared.checker {
        let username = connect.username.clone().unwrap_or_default();
        let password = connect.password.clone().unwrap_or_default();
        if !checker.check(gateway.clone(), username, password).await {
            return Err(ConnectRefusal::BadCredentials);
        }
    }
    if gateway.is_empty() {
        return Err(ConnectRefusal::NotAuthorized);
    }
    if let Some(will) = &connect.will_topic
        && acl::publish(&gateway, will).is_none()
    {
        shared
            .metrics
            .mqtt_acl_refused_publishes
            .fetch_add(1, Relaxed);
        return Err(ConnectRefusal::NotAuthorized);
    }
    Ok(gateway)
}

struct Reader<'a> {
    dialect: Dialect,
    gateway: &'a str,
    peer: SocketAddr,
    shared: &'a Shared,
    to_gateway: mpsc::Sender<Bytes>,
    to_broker: mpsc::Sender<Bytes>,
    pending: mpsc::Sender<(u8, u16, Receipt)>,
    /// MQTT 5 topic aliases the gateway set.
    aliases: HashMap<u16, String>,
    /// QoS 2 readings taken and PUBREC'd, awaiting their PUBREL.
    exactly_once: HashSet<u16>,
}

/// Why the gateway reader stops.
enum Stop {
    Ended,
    Refused,
    Broken(FrameError),
}

impl Reader<'_> {
    async fn run<R: AsyncRead + Unpin>(
        mut self,
        mut gw_read: R,
        mut buf: BytesMut,
        keep_alive: Option<Duration>,
    ) {
        loop {
            let next = read_frame(&mut gw_read, &mut buf, self.shared.max_packet);
            let frame = match keep_alive {
                Some(limit) => match tokio::time::timeout(limit, next).await {
                    Ok(frame) => frame,
                    Err(_) => {
                        tracing::info!(gateway = %self.gateway, "MQTT keep-alive expired");
                        return;
                    }
                },
                None => next.await,
            };
            let frame = match frame {
                Ok(Some(frame)) => frame,
                Ok(None) => return,
                Err(err) => {
                    if let FrameError::Mqtt(rumqttc::mqttbytes::Error::PayloadSizeLimitExceeded(
                        _,
                    )) = err
                    {
                        self.shared
                            .metrics
                            .mqtt_refused_publishes
                            .fetch_add(1, Relaxed);
                    }
                    tracing::warn!(gateway = %self.gateway, peer = %self.peer, "MQTT connection closed: {err}");
                    return;
                }
            };
            match self.packet(frame).await {
                Ok(()) => {}
                Err(Stop::Ended) | Err(Stop::Refused) => return,
                Err(Stop::Broken(err)) => {
                    tracing::warn!(gateway = %self.gateway, peer = %self.peer, "MQTT connection closed: {err}");
                    return;
                }
            }
        }
    }

    async fn packet(&mut self, frame: Bytes) -> Result<(), Stop> {
        let max = self.shared.max_packet;
        match codec::packet_type(&frame) {
            codec::PUBLISH => {
                let publish = self.dialect.publish(&frame, max).map_err(Stop::Broken)?;
                self.publish(frame, publish).await
            }
            codec::SUBSCRIBE => {
                let (pkid, filters) = self.dialect.subscribe(&frame, max).map_err(Stop::Broken)?;
                let refused: Vec<&String> = filters
                    .iter()
                    .filter(|filter| !acl::subscribe(self.gateway, filter))
                    .collect();
                if refused.is_empty() {
                    return self.forward(frame).await;
                }
                // One refused filter refuses the whole SUBSCRIBE.
                self.shared
                    .metrics
                    .mqtt_acl_refused_subscriptions
                    .fetch_add(1, Relaxed);
                tracing::warn!(
                    gateway = %self.gateway,
                    filters = ?refused,
                    "MQTT SUBSCRIBE refused: outside the gateway's own topics"
                );
                self.reply(self.dialect.suback_refused(pkid, filters.len()))
                    .await
            }
            codec::PUBREL => {
                let pkid = self
                    .dialect
                    .pubrel_pkid(&frame, max)
                    .map_err(Stop::Broken)?;
                if self.exactly_once.remove(&pkid) {
                    self.reply(self.dialect.pubcomp(pkid)).await
                } else {
                    self.forward(frame).await
                }
            }
            codec::PINGREQ => self.reply(Bytes::from_static(&codec::PINGRESP_FRAME)).await,
            codec::DISCONNECT => {
                self.forward(frame).await?;
                // Wait for the broker writer to send it and end the session.
                tokio::time::sleep(Duration::from_secs(5)).await;
                Err(Stop::Ended)
            }
            codec::CONNECT => Err(Stop::Broken(FrameError::Unexpected("one CONNECT only"))),
            // Acknowledgements of what the broker delivered, UNSUBSCRIBE.
            _ => self.forward(frame).await,
        }
    }

    async fn publish(&mut self, frame: Bytes, mut publish: codec::PublishInfo) -> Result<(), Stop> {
        let mut realiased = false;
        if let Some(alias) = publish.alias {
            if publish.topic.is_empty() {
                let known =
                    self.aliases
                        .get(&alias)
                        .ok_or(Stop::Broken(FrameError::Unexpected(
                            "a topic alias set before it is used",
                        )))?;
                publish.topic = known.clone();
            } else if self.aliases.len() < MAX_ALIASES || self.aliases.contains_key(&alias) {
                self.aliases.insert(alias, publish.topic.clone());
            } else {
                return Err(Stop::Broken(FrameError::Unexpected("fewer topic aliases")));
            }
            realiased = true;
        }
        match acl::publish(self.gateway, &publish.topic) {
            Some(Route::Ingest) => {
                let receipt = self
                    .shared
                    .pipeline
                    .handle(publish.topic.as_bytes(), &publish.payload)
                    .await;
                if publish.qos == 0 {
                    return Ok(());
                }
                if publish.qos == 2 {
                    self.exactly_once.insert(publish.pkid);
                    if self.exactly_once.len() > self.shared.max_inflight * 2 {
                        return Err(Stop::Broken(FrameError::Unexpected(
                            "PUBREL for the QoS 2 publishes acknowledged",
                        )));
                    }
                }
                // Waits while the gateway's window is full of readings not
                // yet durable: the front stops reading, TCP holds the rest.
                self.pending
                    .send((publish.qos, publish.pkid, receipt))
                    .await
                    .map_err(|_| Stop::Ended)
            }
            Some(Route::Broker) => {
                let frame = if realiased {
                    self.dialect
                        .publish_without_alias(&frame, self.shared.max_packet, &publish.topic)
                        .map_err(Stop::Broken)?
                } else {
                    frame
                };
                self.forward(frame).await
            }
            None => {
                self.shared
                    .metrics
                    .mqtt_acl_refused_publishes
                    .fetch_add(1, Relaxed);
                tracing::warn!(
                    gateway = %self.gateway,
                    topic = %publish.topic,
                    qos = publish.qos,
                    "MQTT PUBLISH refused: outside the gateway's own topics"
                );
                match (self.dialect, publish.qos) {
                    // MQTT 5 can say no to an acknowledged publish.
                    (Dialect::V5, 1 | 2) => {
                        self.reply(self.dialect.ack(publish.qos, publish.pkid, true))
                            .await
                    }
                    // MQTT 3.1.1 cannot, and QoS 0 has no answer: acknowledging
                    // would say it was taken, so the connection is closed.
                    _ => {
                        if let Some(disconnect) = self.dialect.disconnect_not_authorized() {
                            let _ = self.to_gateway.send(disconnect).await;
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                        Err(Stop::Refused)
                    }
                }
            }
        }
    }

    async fn forward(&self, frame: Bytes) -> Result<(), Stop> {
        self.to_broker.send(frame).await.map_err(|_| Stop::Ended)
    }

    async fn reply(&self, frame: Bytes) -> Result<(), Stop> {
        self.to_gateway.send(frame).await.map_err(|_| Stop::Ended)
    }
}

#[cfg(test)]
mod tests {
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use super::*;

    /// Keeps what is written and counts the writes.
    #[derive(Default)]
    struct CountingWriter {
        written: Vec<u8>,
        writes: usize,
    }

    impl AsyncWrite for CountingWriter {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            self.writes += 1;
            self.written.extend_from_slice(buf);
            Poll::Ready(Ok(buf.len()))
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn a_burst_of_small_frames_goes_out_in_one_write_and_in_order() {
        let acks: Vec<Bytes> = (0u8..100)
            .map(|pkid| Bytes::from(vec![0x40, 2, 0, pkid]))
            .collect();
        let mut writer = CountingWriter::default();
        let mut coalesced = BytesMut::new();
        write_coalesced(&mut writer, acks.iter().cloned(), &mut coalesced)
            .await
            .unwrap();
        assert_eq!(writer.writes, 1);
        assert_eq!(writer.written, acks.concat());
    }

    #[tokio::test]
    async fn a_large_frame_is_written_as_it_is_between_its_neighbours() {
        let large = Bytes::from(vec![7u8; COALESCE_BYTES + 1]);
        let frames = [
            Bytes::from_static(b"ab"),
            large.clone(),
            Bytes::from_static(b"cd"),
        ];
        let mut writer = CountingWriter::default();
        let mut coalesced = BytesMut::new();
        write_coalesced(&mut writer, frames.iter().cloned(), &mut coalesced)
            .await
            .unwrap();
        assert_eq!(writer.written, frames.concat());
        // "ab" before the large frame, the frame itself, then "cd".
        assert_eq!(writer.writes, 3);
        assert!(coalesced.is_empty());
    }
}
