"""Finding contacts by the start of their email address or name, in keyset pages.

A prefix, not a substring: a prefix is a range of a B-tree, read in order and stopped at the
page's last row, so a page costs the same whatever the number of matches (0.3 ms at 1M
contacts). A trigram index answers substrings too, but its cost grows with the matches
(73 ms for "smith", 290 ms for "son" at 1M): see docs/console.md, "Contacts".

- **email**: ``lower(email)`` by the unique index ``contacts_organization_email_key``. The
  index has the database's collation; a LIKE prefix is a range scan only in C collation,
  which the embedded database has (``initdb --locale=C``). On another collation the query is
  still right but scans the organisation: add ``create index concurrently … on contacts
  (organization_id, lower(email) text_pattern_ops)`` there.
- **name**: ``contact_name_key(first, last)`` ("first last", lower-cased) and
  ``contact_name_key(last, first)``, two indexes in C collation (migration 0035), so
  "grace", "hopper" and "grace hop" all find Grace Hopper. A contact whose both keys match
  is listed once, under the smaller key.

Pages are ordered by the key the contact matched, then id; the cursor is the last contact's
id, whose key the next page looks up (one primary-key probe). Case folding is the
database's ``lower()``, the same as the indexes': in C collation it folds ASCII only.
"""

from __future__ import annotations

from typing import Any

from psycopg.rows import dict_row

from surge.contacts.schemas import Contact, Page
from surge.contacts.store import CONTACT_COLUMNS, Conn, Row
from surge.errors import Invalid
from surge.fields import check_choice, decode_cursor, like_escape, next_cursor

#: What a search looks in; "auto" is email when the text has an "@", else name, then email
#: if no name starts so.
SEARCH_BY = ("auto", "email", "name")
MAX_QUERY = 200

_EMAIL = f"""
select {CONTACT_COLUMNS} from contacts
where organization_id = %(org)s and lower(email) like %(pattern)s
    and lower(email) > coalesce(
        (select lower(email) from contacts where organization_id = %(org)s and id = %(after)s),
        '')
order by lower(email) limit %(limit)s
"""

# The two keys of a contact, in C collation, as the indexes hold them.
_A = 'contact_name_key(first_name, last_name) collate "C"'
_B = 'contact_name_key(last_name, first_name) collate "C"'
# The indexes are partial (contacts with a name): the same predicate lets a query use them.
_NAMED = "(first_name is not null or last_name is not null)"
# A contact is listed under "first last" unless only "last first" matches, or both do and
# "last first" is smaller: the same rule in the cursor and in each half, so no contact is
# listed twice, nor skipped, across pages.
_NAME = f"""
with cursor as (
    select case when a like %(pattern)s and not (b like %(pattern)s and b < a) then a else b end
        as k
    from (select {_A} as a, {_B} as b from contacts
          where organization_id = %(org)s and id = %(after)s) as c
)
select * from (
    (select {CONTACT_COLUMNS}, {_A} as search_key from contacts
     where organization_id = %(org)s and {_NAMED} and {_A} like %(pattern)s
        and ({_A}, id) > (greatest((select k from cursor), %(prefix)s), %(after)s)
        and not ({_B} like %(pattern)s and {_B} < {_A})
     order by {_A}, id limit %(limit)s)
    union all
    (select {CONTACT_COLUMNS}, {_B} from contacts
     where organization_id = %(org)s and {_NAMED} and {_B} like %(pattern)s
        and ({_B}, id) > (greatest((select k from cursor), %(prefix)s), %(after)s)
        and not ({_A} like %(pattern)s and {_A} <= {_B})
     order by {_B}, id limit %(limit)s)
) as found
order by search_key, id limit %(limit)s
"""


def check_query(text: str) -> str:
    """The searched text, trimmed and with its inner spaces collapsed."""
    text = " ".join(text.split())
    if len(text) > MAX_QUERY:
        raise Invalid("q", f"search for at most {MAX_QUERY} characters")
    return text


async def _folded(conn: Conn, text: str) -> str:
    """``text`` through the database's ``lower()``: the indexes' own case folding."""
    cur = await conn.execute("select lower(%s)", [text])
    row = await cur.fetchone()
    return str(row[0]) if row else text


async def _run(conn: Conn, query: str, params: dict[str, Any]) -> list[Row]:
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(query, params)
    rows = await cur.fetchall()
    for row in rows:
        row.pop("search_key", None)
    return rows


async def search_contacts(
    conn: Conn, org: int, text: str, *, by: str = "auto", after: str | None, limit: int
) -> tuple[Page, str]:
    """One page of the contacts whose email address or name starts with ``text``, and what
    was searched ("email" or "name"; "auto" decides as ``SEARCH_BY`` says)."""
    check_choice("by", by, SEARCH_BY)
    text = check_query(text)
    if not text:
        raise Invalid("q", "type the start of an email address or a name")
    after_id = decode_cursor(after)
    folded = await _folded(conn, text)
    params = {
        "org": org,
        "prefix": folded,
        "pattern": like_escape(folded) + "%",
        "after": after_id,
        "limit": limit,
    }
    searched = by if by != "auto" else ("email" if "@" in text else "name")
    rows = await _run(conn, _EMAIL if searched == "email" else _NAME, params)
    if not rows and by == "auto" and searched == "name" and not after_id:
        searched = "email"
        rows = await _run(conn, _EMAIL, params)
    data = [Contact(**r) for r in rows]
    return Page(data=data, next=next_cursor([c.id for c in data], limit)), searched
