//! SQL text that Diesel's query builder cannot say (CTEs that insert, `unnest`), run as a named
//! prepared statement: PostgreSQL parses it once per connection and, after a few runs, plans it
//! once too. (`diesel::sql_query` is never cached: measured, planning that statement took longer
//! than running it.)

use diesel::pg::Pg;
use diesel::query_builder::AstPass;
use diesel::result::{Error, QueryResult};

/// Writes `sql` into `out` with each placeholder — `$1`, `$2`, … each once and in that order — made
/// by `bind(n, out)` (Diesel numbers the binds it pushes itself, in the order they come).
pub fn walk_numbered<'b>(
    sql: &'b str,
    mut out: AstPass<'_, 'b, Pg>,
    mut bind: impl FnMut(usize, &mut AstPass<'_, 'b, Pg>) -> QueryResult<()>,
) -> QueryResult<()> {
    let mut rest = sql;
    let mut next = 1;
    while let Some(at) = rest.find('$') {
        out.push_sql(&rest[..at]);
        let digits = rest[at + 1..]
            .bytes()
            .take_while(u8::is_ascii_digit)
            .count();
        let n: usize = rest[at + 1..at + 1 + digits]
            .parse()
            .map_err(|_| Error::QueryBuilderError("a `$` that is not a placeholder".into()))?;
        if n != next {
            return Err(Error::QueryBuilderError(
                format!("placeholder ${n} where ${next} was expected").into(),
            ));
        }
        bind(n, &mut out)?;
        next += 1;
        rest = &rest[at + 1 + digits..];
    }
    out.push_sql(rest);
    Ok(())
}

/// What makes a statement struct (with a `QueryFragment<Pg>` of its own, through
/// [`walk_numbered`]) loadable into `QueryableByName` rows, and cached by its SQL text.
macro_rules! cached_statement {
    ($statement:ident) => {
        impl diesel::query_builder::QueryId for $statement<'_> {
            type QueryId = ();
            const HAS_STATIC_QUERY_ID: bool = false;
        }
        impl diesel::query_builder::Query for $statement<'_> {
            type SqlType = diesel::sql_types::Untyped;
        }
        impl<Conn> diesel::RunQueryDsl<Conn> for $statement<'_> {}
    };
}
pub(crate) use cached_statement;
