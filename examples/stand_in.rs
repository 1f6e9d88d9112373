//! The FlexPrice stand-in server of the tests, on its own, for the benchmark and for trying
//! the flexprice target by hand:
//!
//!     cargo run --release --example stand_in -- 127.0.0.1:8099 [--count-only]
//!
//! It prints its URL and API key, then serves until killed. `GET /_stand_in/stats` tells
//! how many events it received (resends included) and how many it keeps.

#[path = "../tests/cli/stand_in.rs"]
mod stand_in;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let addr = args
        .iter()
        .find(|a| !a.starts_with("--"))
        .cloned()
        .unwrap_or_else(|| "127.0.0.1:8099".into());
    let config = stand_in::Config {
        count_only: args.iter().any(|a| a == "--count-only"),
        ..Default::default()
    };
    let server = stand_in::StandIn::start_on(&addr, config);
    println!("{} {}", server.url, stand_in::API_KEY);
    loop {
        std::thread::park();
    }
}
