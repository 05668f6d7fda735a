-- wizd schema version 15 (PostgreSQL): the change feed's triggers are off while nobody
-- watches.
--
-- Why. Enabled, the feed's triggers (0011) cost every job even with nobody watching: each
-- row queues a deferred trigger event, and at COMMIT each event fetches its row and calls
-- wizd_feed_lock(), which finds feed_watchers empty. Disabled triggers cost nothing. So
-- they are enabled when a lease starts while none is held, and disabled when the daemons'
-- sweep finds the last one gone. Measured (python -m bench.hotpath --postgres, 20,000
-- no-op jobs, 5 interleaved rounds, CPU of the backends serving the daemon): 103.5 us a
-- job before, 95.5 after (x0.92); with the triggers dropped altogether, 93.5 (against
-- 107 in that run). With a watcher, as before (128 and 128.5).
--
-- Why "from now" still holds (Queue.watch_started: every commit after the lease's commit
-- is seen). ALTER TABLE ... ENABLE TRIGGER takes the table's SHARE ROW EXCLUSIVE lock, and
-- the registration takes it on jobs, job_events and job_streams before its lease is
-- written, holding them to its COMMIT. That lock conflicts with the ROW EXCLUSIVE lock of
-- every writer of the table, held from its first write to its end. So a transaction that
-- wrote any of the three tables before the registration took its lock has ended before the
-- lease commits; any other writes them only after the lease committed, opens them with the
-- triggers enabled (taking a lock reads the catalog's changes) and, at its COMMIT, finds
-- the lease. Every transaction that commits after the lease is fed, in commit order (the
-- ordering of 0011 is untouched). The same locking is taken when a lease starts while no
-- lease is held though the triggers are on (a sweep that could not turn them off): without
-- it, a writer could look for leases just before the lease's commit and commit just after.
--
-- Serialized. Registrations and sweeps hold the advisory lock of wizd_feed_hold() from
-- before they read or write feed_watchers to their COMMIT, so a sweep cannot turn the
-- triggers off between a registration's check and its lease's commit, and two switches do
-- not race. Lock order, always: that advisory lock, the vacuum's (wizd.store.pg_upkeep: a
-- running VACUUM of jobs holds a lock that conflicts, and waiting for it behind the table
-- lock would stall every writer meanwhile; on its advisory lock the wait stalls nobody),
-- then jobs, job_events, job_streams. A writer holding job_events or job_streams and then
-- asking for jobs can deadlock with that; PostgreSQL ends one of the two after
-- deadlock_timeout and both kinds are run again (the store's deadlock retries). A wait
-- longer than lock_timeout fails the registration with a StoreError (wizd.store.pg_feed)
-- and leaves nothing: writers stall at most that long, once, when the first watcher
-- arrives; its caller may try again. Turning off is only a saving: it skips a running
-- vacuum and waits 100 ms at most (a later sweep tries again).
--
-- Privileges. ALTER TABLE needs the tables' owner: wizd_feed_switch runs as its own owner
-- (SECURITY DEFINER), the role that ran this migration, so a client of another role that
-- may take a lease (INSERT on feed_watchers) can watch; a role that may not is refused
-- before any lock is taken. If the owner of the function may not alter the tables (their
-- owner changed since), the sweep leaves the triggers on (the feed then costs what it did
-- before, and is as exact), and a registration that finds them off fails, naming the
-- cause. The function only ever makes the triggers match the leases.

-- The advisory lock that serializes the feed's switches with registrations and sweeps
-- (to the end of the transaction; taken again by the same transaction, it returns at once).
CREATE FUNCTION wizd_feed_hold() RETURNS void LANGUAGE sql SET search_path FROM CURRENT AS $$
    SELECT pg_advisory_xact_lock(hashtext(current_schema() || '.feed_switch'));
$$;

-- Make the triggers match the leases: on (wanted) or off once no lease is left; whether
-- they are on. See above for the locks it takes and why.
CREATE FUNCTION wizd_feed_switch(wanted boolean) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    leased boolean;
    recording boolean;
BEGIN
    IF NOT has_table_privilege(session_user, 'feed_watchers', 'INSERT') THEN
        RAISE insufficient_privilege USING MESSAGE = format(
            'permission denied for table feed_watchers: role %s may not take a lease',
            session_user);
    END IF;
    PERFORM wizd_feed_hold();
    leased := EXISTS (SELECT 1 FROM feed_watchers);
    SELECT bool_and(tgenabled <> 'D') INTO recording FROM pg_trigger
    WHERE tgrelid IN ('jobs'::regclass, 'job_events'::regclass, 'job_streams'::regclass)
      AND tgname IN ('job_feed_enqueued', 'job_feed_status', 'job_feed_event',
                     'job_feed_stream');
    IF wanted THEN
        IF leased AND recording THEN  -- a renewal, or another watcher: the feed records
            RETURN true;
        END IF;
        PERFORM pg_advisory_xact_lock(hashtext('wizd.vacuum.' || current_schema()));
        LOCK TABLE jobs, job_events, job_streams IN SHARE ROW EXCLUSIVE MODE;
        IF NOT recording THEN
            BEGIN
                ALTER TABLE jobs ENABLE TRIGGER job_feed_enqueued,
                                 ENABLE TRIGGER job_feed_status;
                ALTER TABLE job_events ENABLE TRIGGER job_feed_event;
                ALTER TABLE job_streams ENABLE TRIGGER job_feed_stream;
            EXCEPTION WHEN insufficient_privilege THEN
                RAISE insufficient_privilege USING MESSAGE = format(
                    'the change feed''s triggers are off and %s, the owner of '
                    'wizd_feed_switch, may not turn them on (%s)', current_user, SQLERRM);
            END;
        END IF;
        RETURN true;
    END IF;
    IF leased OR NOT recording THEN
        RETURN recording;
    END IF;
    -- Off is only a saving: it waits for no vacuum and 100 ms at most for the writers (all
    -- queued behind it meanwhile); a later sweep tries again.
    IF NOT pg_try_advisory_xact_lock(hashtext('wizd.vacuum.' || current_schema())) THEN
        RETURN true;
    END IF;
    BEGIN
        PERFORM set_config('lock_timeout', '100ms', true);
        LOCK TABLE jobs, job_events, job_streams IN SHARE ROW EXCLUSIVE MODE;
        ALTER TABLE jobs DISABLE TRIGGER job_feed_enqueued, DISABLE TRIGGER job_feed_status;
        ALTER TABLE job_events DISABLE TRIGGER job_feed_event;
        ALTER TABLE job_streams DISABLE TRIGGER job_feed_stream;
    EXCEPTION WHEN insufficient_privilege OR lock_not_available OR deadlock_detected THEN
        RETURN true;  -- left on: exact as ever
    END;
    RETURN false;
END $$;

-- Nobody watches yet (or the leases are swept soon): off from the start.
SELECT wizd_feed_switch(false);
