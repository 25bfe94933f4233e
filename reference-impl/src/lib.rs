//! Reference implementations of the course protocols: pure codecs, in-process servers and
//! clients. Servers are libraries first; the `reference` binary only parses flags.
#![forbid(unsafe_code)]

#[cfg(feature = "arbitrary")]
mod arb;
pub mod chat;
#[doc(hidden)]
pub mod fuzzing;
pub mod kv;
pub mod mathsvc;
pub mod packet;
pub mod tls;
