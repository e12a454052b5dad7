//! Capability handlers, and the dispatch that serves them by name.
//!
//! Handlers are typed methods on [`Node`]; [`Node::call`] is the one door
//! for callers that speak the bus (local API, remote peers): it checks the
//! descriptor's trust rule, decodes params, runs the handler and encodes the
//! result, so every capability gets the same checks.

pub mod conversations;
pub mod market;
pub mod membership;

use ciborium::Value;
use serde::{de::DeserializeOwned, Serialize};

use super::bus::{level_satisfies, BusError, Caller, Descriptor};
use super::Node;
use crate::store::EventStore;

/// Every capability this node serves.
pub fn descriptors() -> impl Iterator<Item = &'static Descriptor> {
    market::DESCRIPTORS
        .iter()
        .chain(membership::DESCRIPTORS.iter())
        .chain(conversations::DESCRIPTORS.iter())
}

pub fn descriptor(name: &str) -> Option<&'static Descriptor> {
    descriptors().find(|d| d.name == name)
}

/// Params of a capability that takes none: an empty map.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NoParams {}

fn decode_params<T: DeserializeOwned>(params: Value) -> Result<T, BusError> {
    params
        .deserialized()
        .map_err(|e| BusError::bad_request(format!("invalid params: {e}")))
}

fn encode_result<T: Serialize>(result: &T) -> Result<Value, BusError> {
    Value::serialized(result).map_err(BusError::internal)
}

impl<S: EventStore> Node<S> {
    /// Serves capability `name` for `caller`. Unknown names are `not_found`;
    /// a remote caller below the descriptor's trust level is `unauthorized`.
    pub fn call(
        &mut self,
        now_ms: u64,
        caller: Caller,
        name: &str,
        params: Value,
    ) -> Result<Value, BusError> {
        self.call_with_inbox(now_ms, caller, name, params, &conversations::NoInbox)
    }

    /// [`Node::call`] with the runtime's local inbox (read state, copies of
    /// sent messages: `conversations::LocalInbox`), which the
    /// conversation capabilities read and write. The core keeps none.
    pub fn call_with_inbox(
        &mut self,
        now_ms: u64,
        caller: Caller,
        name: &str,
        params: Value,
        inbox: &dyn conversations::LocalInbox,
    ) -> Result<Value, BusError> {
        let _span = tracing::info_span!("call", capability = name).entered();
        let desc = descriptor(name)
            .ok_or_else(|| BusError::not_found(format!("no capability named {name:?}")))?;
        if let Caller::Remote(peer) = caller {
            let level = self.views().membership.level(&peer);
            if !level_satisfies(level, desc.trust_required) {
                return Err(BusError::unauthorized(format!(
                    "{name} needs level {} or above; {peer} is {}",
                    desc.trust_required.map(|l| l.as_str()).unwrap_or("none"),
                    level.map(|l| l.as_str()).unwrap_or("not a member"),
                )));
            }
        }
        match name {
            market::LIST => encode_result(&self.market_list(now_ms, decode_params(params)?)?),
            market::GET => encode_result(&self.market_get(now_ms, decode_params(params)?)?),
            market::POST => {
                encode_result(&self.market_post(now_ms, caller, decode_params(params)?)?)
            }
            market::UPDATE => {
                encode_result(&self.market_update(now_ms, caller, decode_params(params)?)?)
            }
            market::EXPIRE => {
                encode_result(&self.market_expire(now_ms, caller, decode_params(params)?)?)
            }
            market::SEARCH => encode_result(&self.market_search(now_ms, decode_params(params)?)?),
            membership::MEMBER_SET => {
                encode_result(&self.member_set(now_ms, caller, decode_params(params)?)?)
            }
            membership::MEMBER_LIST => {
                // No params: an empty map, or none at all.
                if !params.is_null() {
                    let _: NoParams = decode_params(params)?;
                }
                encode_result(&self.member_list())
            }
            membership::SETTINGS => {
                encode_result(&self.community_settings(now_ms, caller, decode_params(params)?)?)
            }
            membership::PROFILE => {
                encode_result(&self.member_profile(now_ms, caller, decode_params(params)?)?)
            }
            conversations::REPLY => {
                encode_result(&self.market_reply(now_ms, caller, decode_params(params)?)?)
            }
            conversations::CLAIM => {
                encode_result(&self.market_claim(now_ms, caller, decode_params(params)?)?)
            }
            conversations::ACCEPT_CLAIM => {
                encode_result(&self.market_accept_claim(now_ms, caller, decode_params(params)?)?)
            }
            conversations::WITHDRAW_CLAIM => encode_result(&self.market_withdraw_claim(
                now_ms,
                caller,
                decode_params(params)?,
            )?),
            conversations::DM_SEND => {
                encode_result(&self.dm_send_with(now_ms, caller, decode_params(params)?, inbox)?)
            }
            conversations::LIST => {
                if !params.is_null() {
                    let _: NoParams = decode_params(params)?;
                }
                encode_result(&self.conversation_list_with(now_ms, caller, inbox)?)
            }
            conversations::GET => encode_result(&self.conversation_get_with(
                now_ms,
                caller,
                decode_params(params)?,
                inbox,
            )?),
            conversations::MARK_READ => encode_result(&self.conversation_mark_read(
                caller,
                decode_params(params)?,
                inbox,
            )?),
            _ => Err(BusError::internal(format!(
                "capability {name} has a descriptor but no handler"
            ))),
        }
    }
}
