//! peerbench's command line: the contract's flags (`../shared/peerbench/README.md`) and
//! ours (`--durable`, `--linger-ms`, `--rate`, `--threads`).

pub const HELP: &str = "\
peerbench (resumable-stream, Rust): one scenario, one JSON line on stdout.

Usage: peerbench --redis URL --scenario NAME [options]

  --redis URL               Redis to use (default redis://127.0.0.1:6390); loopback only
  --scenario NAME           solo | fanout | resume_latency | many | join_live |
                            llm_paced | scale
  --timeout SECONDS         give up after this long: prints an \"error\" line, exits 2 (60)
  --n N                     chunks of solo, fanout and join_live (20000)
  --resumers K              resumers of fanout and join_live (4)
  --preload P               chunks buffered before resume_latency measures (1000)
  --resumes R               sequential resumes of resume_latency (200)
  --streams S               concurrent streams of many / scale (2000) and llm_paced (1000)
  --chunks-per-stream C     chunks per stream of many / scale (50) and llm_paced (100)
  --rate R                  chunks per second of each llm_paced stream (50)
  --durable                 both contexts in durable mode (impl \"rust-durable\")
  --linger-ms MS            durable mode's linger (Durable::with_linger; default 5)
  --prefix P                key prefix (default pb-rust-<pid>-<random>)
  --threads T               tokio worker threads; 0 = a current-thread runtime, one
                            event loop as node's and asyncio's (0)
  --help                    this text

Chunk i is format!(\"{i:08}:\") + 54 filler characters + \"\\n\": 64 ASCII bytes.

llm_paced: S streams on one context, each emitting C chunks at R chunks/s (the streams'
starts spread over one period), each read by its creator and by one resumer on a second
context that joins once the creator has chunk 0.
";

#[derive(Clone, Debug)]
pub struct Args {
    pub redis: String,
    pub scenario: String,
    pub timeout: f64,
    pub n: usize,
    pub resumers: usize,
    pub preload: usize,
    pub resumes: usize,
    /// `None`: the scenario's default (2000 for many, 1000 for llm_paced).
    pub streams: Option<usize>,
    /// `None`: the scenario's default (50 for many, 100 for llm_paced).
    pub chunks_per_stream: Option<usize>,
    pub rate: f64,
    pub durable: bool,
    /// `None`: `Durable`'s default linger.
    pub linger_ms: Option<u64>,
    pub prefix: String,
    pub threads: usize,
}

pub fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        redis: "redis://127.0.0.1:6390".into(),
        scenario: String::new(),
        timeout: 60.0,
        n: 20000,
        resumers: 4,
        preload: 1000,
        resumes: 200,
        streams: None,
        chunks_per_stream: None,
        rate: 50.0,
        durable: false,
        linger_ms: None,
        prefix: String::new(),
        threads: 0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--help" | "-h" => {
                print!("{HELP}");
                std::process::exit(0);
            }
            "--durable" => {
                args.durable = true;
                continue;
            }
            _ => {}
        }
        let value = it
            .next()
            .ok_or_else(|| format!("missing value for {flag}"))?;
        let number = || {
            value
                .parse::<usize>()
                .map_err(|_| format!("{flag} wants a number, got {value:?}"))
        };
        let real = || {
            value
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite() && *v > 0.0)
                .ok_or_else(|| format!("{flag} wants a positive number, got {value:?}"))
        };
        match flag.as_str() {
            "--redis" => args.redis = value.clone(),
            "--scenario" => args.scenario = value.clone(),
            "--timeout" => args.timeout = real()?,
            "--n" => args.n = number()?,
            "--resumers" => args.resumers = number()?,
            "--preload" => args.preload = number()?,
            "--resumes" => args.resumes = number()?.max(1),
            "--streams" => args.streams = Some(number()?),
            "--chunks-per-stream" => args.chunks_per_stream = Some(number()?),
            "--rate" => args.rate = real()?,
            "--linger-ms" => args.linger_ms = Some(number()? as u64),
            "--prefix" => args.prefix = value.clone(),
            "--threads" => args.threads = number()?,
            other => return Err(format!("unknown option {other} (see --help)")),
        }
    }
    if args.scenario.is_empty() {
        return Err("--scenario is required (see --help)".into());
    }
    if args.linger_ms.is_some() && !args.durable {
        return Err("--linger-ms is durable mode's: add --durable".into());
    }
    Ok(args)
}
