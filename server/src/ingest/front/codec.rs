//! MQTT 3.1.1 and 5 packets through rumqttc's published codecs
//! (`rumqttc::mqttbytes::v4`, `rumqttc::v5::mqttbytes::v5`), reduced to
//! what the front looks at. Frames it does not need to read are forwarded
//! as they came, byte for byte.

use bytes::{Bytes, BytesMut};
use rumqttc::mqttbytes::v4;
use rumqttc::v5::mqttbytes::v5;
use tokio::io::{AsyncRead, AsyncReadExt as _};

/// MQTT packet types (the high nibble of the first byte).
pub const CONNECT: u8 = 1;
pub const PUBLISH: u8 = 3;
pub const PUBREL: u8 = 6;
pub const SUBSCRIBE: u8 = 8;
pub const PINGREQ: u8 = 12;
pub const PINGRESP: u8 = 13;
pub const DISCONNECT: u8 = 14;
pub const PINGREQ_FRAME: [u8; 2] = [0xC0, 0x00];
pub const PINGRESP_FRAME: [u8; 2] = [0xD0, 0x00];

pub fn packet_type(frame: &[u8]) -> u8 {
    frame.first().map_or(0, |byte| byte >> 4)
}

#[derive(Debug)]
pub enum FrameError {
    Io(std::io::Error),
    Mqtt(rumqttc::mqttbytes::Error),
    Mqtt5(rumqttc::v5::mqttbytes::Error),
    Level(u8),
    Unexpected(&'static str),
}

impl From<std::io::Error> for FrameError {
    fn from(err: std::io::Error) -> Self {
        Self::Io(err)
    }
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Io(err) => write!(f, "{err}"),
            Self::Mqtt(err) => write!(f, "malformed MQTT packet: {err}"),
            Self::Mqtt5(err) => write!(f, "malformed MQTT 5 packet: {err}"),
            Self::Level(level) => {
                write!(
                    f,
                    "unsupported MQTT protocol level {level} (3.1.1 and 5 are served)"
                )
            }
            Self::Unexpected(what) => write!(f, "expected {what}"),
        }
    }
}

/// Reads one whole frame, at most `max` bytes; `None` at a clean end of
/// the stream.
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut BytesMut,
    max: usize,
) -> Result<Option<Bytes>, FrameError> {
    loop {
        match rumqttc::mqttbytes::check(buf.iter(), max) {
            Ok(header) => return Ok(Some(buf.split_to(header.frame_length()).freeze())),
            Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => {}
            Err(err) => return Err(FrameError::Mqtt(err)),
        }
        buf.reserve(4096);
        if reader.read_buf(buf).await? == 0 {
            return Ok(None);
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    V4,
    V5,
}

/// What the front needs of a CONNECT.
pub struct ConnectInfo {
    pub client_id: String,
    pub username: Option<String>,
    pub password: Option<String>,
    pub keep_alive: u16,
    pub will_topic: Option<String>,
}

pub struct PublishInfo {
    pub topic: String,
    pub qos: u8,
    pub pkid: u16,
    pub payload: Bytes,
    /// MQTT 5: the topic alias it set or used.
    pub alias: Option<u16>,
}

/// Why a CONNECT is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectRefusal {
    BadCredentials,
    NotAuthorized,
    Unavailable,
}

impl Dialect {
    /// The protocol level of a CONNECT frame.
    pub fn of_connect(frame: &[u8]) -> Result<Self, FrameError> {
        if packet_type(frame) != CONNECT {
            return Err(FrameError::Unexpected("CONNECT as the first packet"));
        }
        // Fixed header: the type byte and 1 to 4 bytes of remaining
        // length; then the protocol name "MQTT" (2 + 4 bytes), then the level.
        let length_bytes = frame[1..]
            .iter()
            .take(4)
            .position(|byte| byte & 0x80 == 0)
            .ok_or(FrameError::Unexpected("a remaining length"))?
            + 1;
        match frame.get(1 + length_bytes + 6) {
            Some(4) => Ok(Self::V4),
            Some(5) => Ok(Self::V5),
            Some(&level) => Err(FrameError::Level(level)),
            None => Err(FrameError::Unexpected("a protocol level")),
        }
    }

    fn read_v4(frame: &Bytes, max: usize) -> Result<v4::Packet, FrameError> {
        v4::Packet::read(&mut BytesMut::from(&frame[..]), max).map_err(FrameError::Mqtt)
    }

    fn read_v5(frame: &Bytes, max: usize) -> Result<v5::Packet, FrameError> {
        v5::Packet::read(&mut BytesMut::from(&frame[..]), Some(max as u32))
            .map_err(FrameError::Mqtt5)
    }

    pub fn connect(self, frame: &Bytes, max: usize) -> Result<ConnectInfo, FrameError> {
        match self {
            Self::V4 => match Self::read_v4(frame, max)? {
                v4::Packet::Connect(connect) => Ok(ConnectInfo {
                    username: connect.login.as_ref().map(|l| l.username.clone()),
                    password: connect.login.map(|l| l.password),
                    will_topic: connect.last_will.map(|w| w.topic),
                    client_id: connect.client_id,
                    keep_alive: connect.keep_alive,
                }),
                _ => Err(FrameError::Unexpected("CONNECT")),
            },
            Self::V5 => match Self::read_v5(frame, max)? {
                v5::Packet::Connect(connect, will, login) => Ok(ConnectInfo {
                    username: login.as_ref().map(|l| l.username.clone()),
                    password: login.map(|l| l.password),
                    will_topic: will.map(|w| String::from_utf8_lossy(&w.topic).into_owned()),
                    client_id: connect.client_id,
                    keep_alive: connect.keep_alive,
                }),
                _ => Err(FrameError::Unexpected("CONNECT")),
            },
        }
    }

    /// The CONNECT with its login replaced: the broker behind the front
    /// checks only that the front sent it.
    pub fn connect_with_login(
        self,
        frame: &Bytes,
        max: usize,
        username: &str,
        password: &str,
    ) -> Result<Bytes, FrameError> {
        let mut out = BytesMut::with_capacity(frame.len() + password.len() + 16);
        match self {
            Self::V4 => {
                let mut packet = Self::read_v4(frame, max)?;
                if let v4::Packet::Connect(connect) = &mut packet {
                    connect.login = Some(v4::Login::new(username, password));
                }
                packet
                    .write(&mut out, usize::MAX)
                    .map_err(FrameError::Mqtt)?;
            }
            Self::V5 => {
                let mut packet = Self::read_v5(frame, max)?;
                if let v5::Packet::Connect(_, _, login) = &mut packet {
                    *login = Some(v5::Login::new(username, password));
                }
                packet.write(&mut out, None).map_err(FrameError::Mqtt5)?;
            }
        }
        Ok(out.freeze())
    }

    pub fn publish(self, frame: &Bytes, max: usize) -> Result<PublishInfo, FrameError> {
        match self {
            Self::V4 => match Self::read_v4(frame, max)? {
                v4::Packet::Publish(publish) => Ok(PublishInfo {
                    topic: publish.topic,
                    qos: publish.qos as u8,
                    pkid: publish.pkid,
                    payload: publish.payload,
                    alias: None,
                }),
                _ => Err(FrameError::Unexpected("PUBLISH")),
            },
            Self::V5 => match Self::read_v5(frame, max)? {
                v5::Packet::Publish(publish) => Ok(PublishInfo {
                    topic: String::from_utf8(publish.topic.to_vec())
                        .map_err(|_| FrameError::Unexpected("a UTF-8 topic"))?,
                    qos: publish.qos as u8,
                    pkid: publish.pkid,
                    payload: publish.payload,
                    alias: publish.properties.and_then(|p| p.topic_alias),
                }),
                _ => Err(FrameError::Unexpected("PUBLISH")),
            },
        }
    }

    /// A PUBLISH again with its full topic and no alias (MQTT 5): one the
    /// front resolved, forwarded to a broker that never saw the alias set.
    pub fn publish_without_alias(
        self,
        frame: &Bytes,
        max: usize,
        topic: &str,
    ) -> Result<Bytes, FrameError> {
        let mut packet = Self::read_v5(frame, max)?;
        if let v5::Packet::Publish(publish) = &mut packet {
            publish.topic = Bytes::copy_from_slice(topic.as_bytes());
            if let Some(properties) = &mut publish.properties {
                properties.topic_alias = None;
            }
        }
        let mut out = BytesMut::with_capacity(frame.len() + topic.len());
        packet.write(&mut out, None).map_err(FrameError::Mqtt5)?;
        Ok(out.freeze())
    }

    /// A SUBSCRIBE's packet id and filters.
    pub fn subscribe(self, frame: &Bytes, max: usize) -> Result<(u16, Vec<String>), FrameError> {
        match self {
            Self::V4 => match Self::read_v4(frame, max)? {
                v4::Packet::Subscribe(s) => {
                    Ok((s.pkid, s.filters.into_iter().map(|f| f.path).collect()))
                }
                _ => Err(FrameError::Unexpected("SUBSCRIBE")),
            },
            Self::V5 => match Self::read_v5(frame, max)? {
                v5::Packet::Subscribe(s) => {
                    Ok((s.pkid, s.filters.into_iter().map(|f| f.path).collect()))
                }
                _ => Err(FrameError::Unexpected("SUBSCRIBE")),
            },
        }
    }

    pub fn pubrel_pkid(self, frame: &Bytes, max: usize) -> Result<u16, FrameError> {
        match self {
            Self::V4 => match Self::read_v4(frame, max)? {
                v4::Packet::PubRel(p) => Ok(p.pkid),
                _ => Err(FrameError::Unexpected("PUBREL")),
            },
            Self::V5 => match Self::read_v5(frame, max)? {
                v5::Packet::PubRel(p) => Ok(p.pkid),
                _ => Err(FrameError::Unexpected("PUBREL")),
            },
        }
    }

    /// The acknowledgement of a QoS 1 (PUBACK) or QoS 2 (PUBREC) publish;
    /// `refused` only in MQTT 5, with reason "not authorized".
    pub fn ack(self, qos: u8, pkid: u16, refused: bool) -> Bytes {
        match self {
            Self::V4 => {
                let packet = if qos == 2 {
                    v4::Packet::PubRec(v4::PubRec::new(pkid))
                } else {
                    v4::Packet::PubAck(v4::PubAck::new(pkid))
                };
                write_v4(&packet)
            }
            Self::V5 => {
                let packet = if qos == 2 {
                    let mut rec = v5::PubRec::new(pkid, None);
                    if refused {
                        rec.reason = v5::PubRecReason::NotAuthorized;
                    }
                    v5::Packet::PubRec(rec)
                } else {
                    let mut ack = v5::PubAck::new(pkid, None);
                    if refused {
                        ack.reason = v5::PubAckReason::NotAuthorized;
                    }
                    v5::Packet::PubAck(ack)
                };
                write_v5(&packet)
            }
        }
    }

    pub fn pubcomp(self, pkid: u16) -> Bytes {
        match self {
            Self::V4 => write_v4(&v4::Packet::PubComp(v4::PubComp::new(pkid))),
            Self::V5 => write_v5(&v5::Packet::PubComp(v5::PubComp::new(pkid, None))),
        }
    }

    /// A SUBACK refusing each of `filters` filters.
    pub fn suback_refused(self, pkid: u16, filters: usize) -> Bytes {
        match self {
            Self::V4 => write_v4(&v4::Packet::SubAck(v4::SubAck::new(
                pkid,
                vec![v4::SubscribeReasonCode::Failure; filters],
            ))),
            Self::V5 => write_v5(&v5::Packet::SubAck(v5::SubAck {
                pkid,
                return_codes: vec![v5::SubscribeReasonCode::NotAuthorized; filters],
                properties: None,
            })),
        }
    }

    pub fn connack_refused(self, refusal: ConnectRefusal) -> Bytes {
        match self {
            Self::V4 => write_v4(&v4::Packet::ConnAck(v4::ConnAck::new(
                match refusal {
                    ConnectRefusal::BadCredentials => v4::ConnectReturnCode::BadUserNamePassword,
                    ConnectRefusal::NotAuthorized => v4::ConnectReturnCode::NotAuthorized,
                    ConnectRefusal::Unavailable => v4::ConnectReturnCode::ServiceUnavailable,
                },
                false,
            ))),
            Self::V5 => write_v5(&v5::Packet::ConnAck(v5::ConnAck {
                session_present: false,
                code: match refusal {
                    ConnectRefusal::BadCredentials => v5::ConnectReturnCode::BadUserNamePassword,
                    ConnectRefusal::NotAuthorized => v5::ConnectReturnCode::NotAuthorized,
                    ConnectRefusal::Unavailable => v5::ConnectReturnCode::ServerUnavailable,
                },
                properties: None,
            })),
        }
    }

    /// MQTT 5 only: the server's DISCONNECT, reason "not authorized".
    pub fn disconnect_not_authorized(self) -> Option<Bytes> {
        (self == Self::V5).then(|| {
            write_v5(&v5::Packet::Disconnect(v5::Disconnect::new(
                v5::DisconnectReasonCode::NotAuthorized,
            )))
        })
    }
}

fn write_v4(packet: &v4::Packet) -> Bytes {
    let mut out = BytesMut::with_capacity(16);
    // Acknowledgements are a few bytes: no size limit can refuse them.
    let _ = packet.write(&mut out, usize::MAX);
    out.freeze()
}

fn write_v5(packet: &v5::Packet) -> Bytes {
    let mut out = BytesMut::with_capacity(16);
    let _ = packet.write(&mut out, None);
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_protocol_level_is_read_from_the_connect() {
        let mut out = BytesMut::new();
        v4::Packet::Connect(v4::Connect::new("gw1"))
            .write(&mut out, usize::MAX)
            .unwrap();
        let frame = out.freeze();
        assert_eq!(Dialect::of_connect(&frame).unwrap(), Dialect::V4);
        let info = Dialect::V4.connect(&frame, 1 << 20).unwrap();
        assert_eq!(info.client_id, "gw1");

        let mut out = BytesMut::new();
        let connect = v5::Connect {
            keep_alive: 5,
            client_id: "gw5".into(),
            clean_start: true,
            properties: None,
        };
        v5::Packet::Connect(connect, None, Some(v5::Login::new("gw5", "pw")))
            .write(&mut out, None)
            .unwrap();
        let frame = out.freeze();
        assert_eq!(Dialect::of_connect(&frame).unwrap(), Dialect::V5);
        let info = Dialect::V5.connect(&frame, 1 << 20).unwrap();
        assert_eq!(
            (info.client_id.as_str(), info.password.as_deref()),
            ("gw5", Some("pw"))
        );
        let relogged = Dialect::V5
            .connect_with_login(&frame, 1 << 20, "gw5", "secret")
            .unwrap();
        let again = Dialect::V5.connect(&relogged, 1 << 20).unwrap();
        assert_eq!(again.password.as_deref(), Some("secret"));
    }
}
