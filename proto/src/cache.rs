//! The pure half of the response cache: which requests may be answered
//! from it, the key an answer is stored under, and the two conversions
//! that let one stored answer serve both kinds of client — a finished
//! stream assembled into a whole completion ([`Assembler`]), and a whole
//! completion replayed as stream chunks ([`replay_chunks`]). Entries are
//! whole OpenAI answers — completions, or embeddings lists — `model`
//! already the alias, and only finished ones ([`is_finished_answer`]);
//! where they are kept, and for how long, is the node's business.

mod assemble;
mod key;
mod replay;

pub use assemble::{is_finished_answer, Assembler, ChunkRole};
pub use key::{cache_key, is_deterministic, is_storable, CacheKey};
pub use replay::replay_chunks;
