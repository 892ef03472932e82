//! sori's offline tools, out of the server's tree: `eval` (accuracy on a corpus, offline and
//! over `/ws`) and `bench` (speed, latency, load, peers), with the `sori-tools` command line
//! that `sori eval` and `sori bench` forward to. They drive the server library from the
//! outside through `sori::harness`; the server never depends on this crate.

pub mod bench;
pub mod cli;
pub mod eval;
