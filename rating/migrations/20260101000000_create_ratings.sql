-- The ratings, each record's running totals, and how far into the ratings
-- topic the store is. Portable SQL: the same migration serves SQLite and
-- PostgreSQL.

-- One rating per (record type, record id, user): a user who rates again
-- replaces their rating.
CREATE TABLE ratings (
    record_type TEXT    NOT NULL,
    record_id   TEXT    NOT NULL,
    user_id     TEXT    NOT NULL,
    value       INTEGER NOT NULL,
    PRIMARY KEY (record_type, record_id, user_id)
);

-- Each record's sum and count of ratings, kept in the same transaction as
-- the rows of `ratings`, so an average is one primary-key read. A record
-- without ratings has no row.
CREATE TABLE rating_totals (
    record_type  TEXT   NOT NULL,
    record_id    TEXT   NOT NULL,
    rating_sum   BIGINT NOT NULL,
    rating_count BIGINT NOT NULL,
    PRIMARY KEY (record_type, record_id)
);

-- The next offset to apply of each partition of the topic the events come
-- from, written in the transaction that applies the events before it: the
-- store and its position in the topic never disagree.
CREATE TABLE consumer_offsets (
    topic        TEXT    NOT NULL,
    partition_id INTEGER NOT NULL,
    next_offset  BIGINT  NOT NULL,
    PRIMARY KEY (topic, partition_id)
);
