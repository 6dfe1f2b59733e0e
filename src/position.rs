//! Where a reader starts: v1's skip in units, or our chunk index.

/// Where a reader starts.
///
/// ```
/// use resumable_stream::Position;
///
/// // v1's `skipCharacters`, as the deployed libraries take it.
/// assert_eq!(Position::from_skip(None), Position::Start);
/// assert_eq!(Position::from_skip(Some(12)), Position::Units(12));
/// // An SSE `Last-Event-ID` header holding a reader's chunk position.
/// let last_event_id = "7";
/// let position = last_event_id.parse().map(Position::Chunk);
/// assert_eq!(position, Ok(Position::Chunk(7)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Position {
    /// From the beginning (the v1 request carries no `skipCharacters`).
    Start,
    /// After this many units (UTF-16 by default) of what was produced: v1's
    /// `skipCharacters`.
    Units(u64),
    /// From this chunk index (0 is the first chunk): for SSE `Last-Event-ID`. Needs a
    /// producer of ours (extension `fromChunk`); a v1 producer is refused with
    /// [`Error::Unsupported`](crate::Error::Unsupported).
    Chunk(u64),
}

impl Position {
    /// v1's optional skip: `None` is [`Position::Start`].
    pub fn from_skip(skip: Option<u64>) -> Position {
        skip.map_or(Position::Start, Position::Units)
    }
}

/// v1's optional skip, as the deployed libraries take it: `None` is the start,
/// `Some(n)` skips `n` units. So a driver's `position` argument takes `None`,
/// `Some(12)` or a [`Position`].
///
/// ```
/// use resumable_stream::Position;
/// assert_eq!(Position::from(Some(12)), Position::Units(12));
/// assert_eq!(Position::from(None), Position::Start);
/// ```
impl From<Option<u64>> for Position {
    fn from(skip: Option<u64>) -> Position {
        Position::from_skip(skip)
    }
}
