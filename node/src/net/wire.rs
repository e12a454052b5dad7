//! Request-response bodies of `/hearthnet/sync/1` and `/hearthnet/bus/2`
//! (CBOR, via libp2p's cbor codec). Sync messages travel as opaque bytes
//! that the core decodes with its own bounds: the transport never parses
//! protocol content. Bus params and answers travel as ciborium-encoded
//! bytes too: libp2p's codec (cbor4ii) writes a CBOR `null` held in a
//! `ciborium::Value` as an empty array, so an absent optional field came
//! back as `[]` and failed to decode on the caller (bus/1's bug).

use hearth_proto::CommunityId;
use libp2p::StreamProtocol;
use serde::{Deserialize, Serialize};

use crate::core::bus::BusError;

pub const SYNC_PROTOCOL: StreamProtocol = StreamProtocol::new("/hearthnet/sync/1");
pub const BUS_PROTOCOL: StreamProtocol = StreamProtocol::new("/hearthnet/bus/2");

/// Requests larger than this are refused by the codec: a sync message is
/// capped well below it by the core, a bus call is small.
pub const REQUEST_BYTES_MAX: u64 = 2 << 20;
/// Responses may carry event batches.
pub const RESPONSE_BYTES_MAX: u64 = 4 << 20;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SyncRequest {
    /// Sync is per community: a peer of another community is told so.
    pub community: CommunityId,
    #[serde(with = "serde_bytes")]
    pub message: Vec<u8>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum SyncResponse {
    /// The core's encoded reply messages, in order.
    Messages(Vec<serde_bytes::ByteBuf>),
    /// The request was refused; the reason is for logs.
    Refused(String),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BusRequest {
    pub capability: String,
    #[serde(with = "value_bytes")]
    pub params: ciborium::Value,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum BusResponse {
    Ok(#[serde(with = "value_bytes")] ciborium::Value),
    Err(BusError),
}

/// A `ciborium::Value` carried as the bytes ciborium encodes it to, so the
/// outer codec never re-encodes it (see the module doc). Decoding is
/// bounded by the codec's size limits and ciborium's recursion limit.
mod value_bytes {
    use serde::{de::Error as _, ser::Error as _, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &ciborium::Value, s: S) -> Result<S::Ok, S::Error> {
        let mut bytes = Vec::new();
        ciborium::into_writer(value, &mut bytes).map_err(S::Error::custom)?;
        s.serialize_bytes(&bytes)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<ciborium::Value, D::Error> {
        let bytes = serde_bytes::ByteBuf::deserialize(d)?;
        ciborium::from_reader(bytes.as_slice())
            .map_err(|e| D::Error::custom(format!("a bus value that is not CBOR: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use futures::io::Cursor;
    use libp2p::request_response::{cbor, Codec};

    use super::*;

    fn through_codec(response: BusResponse) -> BusResponse {
        futures::executor::block_on(async {
            let mut codec = cbor::codec::Codec::<BusRequest, BusResponse>::default();
            let mut wire = Cursor::new(Vec::new());
            codec
                .write_response(&BUS_PROTOCOL, &mut wire, response)
                .await
                .expect("encodes");
            wire.set_position(0);
            codec
                .read_response(&BUS_PROTOCOL, &mut wire)
                .await
                .expect("decodes")
        })
    }

    /// A `null` in a remote answer arrives as `null`, not as an empty
    /// array (what carrying the `Value` through the codec did).
    #[test]
    fn null_in_a_bus_answer_survives_the_wire() {
        let answer = ciborium::Value::Map(vec![
            ("degraded".into(), ciborium::Value::Null),
            ("tags".into(), ciborium::Value::Array(vec![])),
        ]);
        match through_codec(BusResponse::Ok(answer.clone())) {
            BusResponse::Ok(v) => assert_eq!(v, answer),
            BusResponse::Err(e) => panic!("an error came back: {e:?}"),
        }
    }

    /// Bytes that are not CBOR inside a bus answer are a decode error,
    /// not a panic or an empty value.
    #[test]
    fn a_bus_value_that_is_not_cbor_is_refused() {
        /// Encodes like `BusResponse::Ok`, with bytes of our choosing.
        #[derive(Debug, Serialize, Deserialize)]
        enum Forged {
            Ok(serde_bytes::ByteBuf),
        }
        futures::executor::block_on(async {
            let mut wire = Cursor::new(Vec::new());
            // 0xff is a CBOR "break" with nothing to end: never a value.
            cbor::codec::Codec::<BusRequest, Forged>::default()
                .write_response(
                    &BUS_PROTOCOL,
                    &mut wire,
                    Forged::Ok(serde_bytes::ByteBuf::from(vec![0xff])),
                )
                .await
                .expect("encodes");
            wire.set_position(0);
            let read = cbor::codec::Codec::<BusRequest, BusResponse>::default()
                .read_response(&BUS_PROTOCOL, &mut wire)
                .await;
            let err = read.expect_err("not CBOR inside");
            assert!(
                err.to_string().contains("not CBOR"),
                "the error says what was wrong: {err}"
            );
        });
    }
}
