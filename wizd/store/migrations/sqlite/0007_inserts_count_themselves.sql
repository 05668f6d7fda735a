-- wizd schema version 7 (SQLite): new jobs are counted by the statement that inserts them.
--
-- The count trigger on INSERT ran two statements for every new job (an INSERT OR IGNORE and
-- an UPDATE of job_counts): about a fifth of a bulk enqueue, all of it under the write
-- lock. wizd's Inserter now counts what each of its inserts wrote with one upsert per
-- (queue, status): a bulk enqueue once (sqlite_queries.COUNT_ADD, from
-- wizd.store.rows.added), as claims and completions count themselves since schema 5.
-- Nothing else inserts jobs.

DROP TRIGGER job_counts_insert;
