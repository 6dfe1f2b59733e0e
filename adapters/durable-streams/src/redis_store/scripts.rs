//! The Lua scripts, one per operation, each the shared prelude and its own body; run
//! with `EVALSHA`, and `EVAL` (which also caches it) when Redis answers `NOSCRIPT`.

/// A script and its SHA1.
#[derive(Debug)]
pub(crate) struct Lua {
    pub(crate) code: String,
    pub(crate) sha: String,
}

impl Lua {
    fn new(body: &str) -> Lua {
        let code = format!("{}\n{body}", include_str!("lua/prelude.lua"));
        let sha = redis::Script::new(&code).get_hash().to_owned();
        Lua { code, sha }
    }
}

/// Every script of the store.
#[derive(Debug)]
pub(crate) struct Scripts {
    pub(crate) head: Lua,
    pub(crate) read: Lua,
    pub(crate) append: Lua,
    pub(crate) create: Lua,
    pub(crate) fork: Lua,
    pub(crate) unref: Lua,
    pub(crate) delete: Lua,
}

impl Scripts {
    pub(crate) fn new() -> Scripts {
        Scripts {
            head: Lua::new(include_str!("lua/head.lua")),
            read: Lua::new(include_str!("lua/read.lua")),
            append: Lua::new(include_str!("lua/append.lua")),
            create: Lua::new(include_str!("lua/create.lua")),
            fork: Lua::new(include_str!("lua/fork.lua")),
            unref: Lua::new(include_str!("lua/unref.lua")),
            delete: Lua::new(include_str!("lua/delete.lua")),
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use resumable_stream::wire::log::{end_fields, LogEnding, END_ID};

    /// The scripts write resumable-stream's log format: the end id and fields agree.
    #[test]
    fn the_prelude_speaks_the_log_format() {
        let prelude = include_str!("lua/prelude.lua");
        assert!(prelude.contains(&format!("local END_ID = '{END_ID}'")));
        assert_eq!(
            end_fields(&LogEnding::Done, Some(7)),
            ["end", "done", "next", "7"].map(Bytes::from)
        );
        assert!(prelude.contains("'end', 'done', 'next', n2s(tail)"));
        assert_eq!(
            resumable_stream::wire::log::chunk_fields(&[Bytes::from_static(b"x")])[0],
            "d"
        );
        assert!(prelude.contains("args[#args + 1] = 'd'"));
        assert_eq!(
            resumable_stream::wire::log::chunks_id(5, 2).to_string(),
            "5-2"
        );
    }
}
