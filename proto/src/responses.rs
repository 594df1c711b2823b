//! OpenAI's Responses API (`POST /v1/responses`) in chat completion terms.
//! An upstream that speaks it gets the client's request as it came; any
//! other gets it as a chat request ([`request::to_chat`]), and its answer
//! comes back as a `response` object ([`reply::to_response`]) or the
//! Responses stream events ([`stream::ToResponseEvents`]).
//!
//! What has no chat counterpart and changes the answer is refused with a
//! 400 naming the parameter: built-in tools, background mode, stored
//! prompts, items by reference.

pub mod object;
pub mod passthrough;
pub mod reply;
pub mod request;
pub mod stream;

pub use object::Envelope;
