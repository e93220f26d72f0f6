-- 0004_budget_batch: reservations and settlements in batches (group commit).
-- toolgate_budget_batch applies a list of reserve and settle operations in order, in the
-- calling statement's transaction, so that concurrent admissions share one commit (one WAL
-- flush) instead of queueing on the budget row's lock one commit at a time. Each operation
-- keeps the semantics of the single-statement Reserve and Settle: a reservation is held on
-- every budget or on none, and the first budget in refs order that it does not fit is named.
-- Operation i uses refs p_scopes/p_refids[p_ref_from[i]:p_ref_to[i]] (for a settle, the refs
-- charged when its reservation is gone). It returns one row per operation: status 'ok',
-- 'exceeded' (with the refusing budget) or 'conflict' (a reservation id already in use).
CREATE FUNCTION toolgate_budget_batch(p_kinds text[], p_ids text[], p_amounts numeric[], p_expires timestamptz[],
	p_ref_from int[], p_ref_to int[], p_scopes text[], p_refids text[], p_now timestamptz, p_async boolean)
RETURNS TABLE (o_n int, o_status text, o_scope text, o_id text, o_max float8, o_spend float8, o_reserved float8)
LANGUAGE plpgsql AS $$
DECLARE
	i int;
	v_s text[];
	v_d text[];
	v_res record;
	v_bad record;
	v_rows int;
BEGIN
	IF p_async THEN
		-- Opt-in: this transaction's commit does not wait for the WAL flush.
		PERFORM set_config('synchronous_commit', 'off', true);
	END IF;
	-- Lock every existing budget row the batch may change, in one order, before changing any,
	-- so that concurrent batches queue instead of deadlocking.
	PERFORM 1 FROM budgets b WHERE (b.scope, b.id) IN (
		SELECT u.s, u.d FROM unnest(p_scopes, p_refids) AS u(s, d)
		UNION
		SELECT u.s, u.d FROM budget_reservations r, unnest(r.ref_scopes, r.ref_ids) AS u(s, d)
		WHERE r.id = ANY (p_ids)
	) ORDER BY b.scope, b.id FOR UPDATE OF b;

	FOR i IN 1 .. coalesce(array_length(p_kinds, 1), 0) LOOP
		v_s := p_scopes[p_ref_from[i]:p_ref_to[i]];
		v_d := p_refids[p_ref_from[i]:p_ref_to[i]];
		o_n := i; o_status := 'ok'; o_scope := NULL; o_id := NULL; o_max := NULL; o_spend := NULL; o_reserved := NULL;
		IF p_kinds[i] = 'settle' THEN
			DELETE FROM budget_reservations r WHERE r.id = p_ids[i] RETURNING r.ref_scopes, r.ref_ids, r.amount INTO v_res;
			IF FOUND THEN
				UPDATE budgets b SET spend = b.spend + p_amounts[i], reserved = GREATEST(b.reserved - v_res.amount, 0), updated_at = p_now
				FROM unnest(v_res.ref_scopes, v_res.ref_ids) AS u(s, d) WHERE b.scope = u.s AND b.id = u.d;
				GET DIAGNOSTICS v_rows = ROW_COUNT;
				IF v_rows < cardinality(v_res.ref_scopes) THEN -- a budget row was deleted meanwhile
					INSERT INTO budgets (scope, id, spend, updated_at)
					SELECT u.s, u.d, p_amounts[i], p_now FROM unnest(v_res.ref_scopes, v_res.ref_ids) AS u(s, d)
					ON CONFLICT (scope, id) DO NOTHING;
				END IF;
			ELSE
				INSERT INTO budgets AS b (scope, id, spend, updated_at)
				SELECT u.s, u.d, p_amounts[i], p_now FROM unnest(v_s, v_d) AS u(s, d)
				ON CONFLICT (scope, id) DO UPDATE SET spend = b.spend + excluded.spend, updated_at = excluded.updated_at;
			END IF;
		ELSE
			SELECT b.scope, b.id, b.max_budget::float8 AS mx, b.spend::float8 AS sp, b.reserved::float8 AS rs INTO v_bad
			FROM unnest(v_s, v_d) WITH ORDINALITY AS u(s, d, k) JOIN budgets b ON b.scope = u.s AND b.id = u.d
			WHERE b.max_budget IS NOT NULL AND b.spend + b.reserved + p_amounts[i] > b.max_budget
			ORDER BY u.k LIMIT 1;
			IF FOUND THEN
				o_status := 'exceeded'; o_scope := v_bad.scope; o_id := v_bad.id;
				o_max := v_bad.mx; o_spend := v_bad.sp; o_reserved := v_bad.rs;
				RETURN NEXT;
				CONTINUE;
			END IF;
			INSERT INTO budget_reservations (id, ref_scopes, ref_ids, amount, expires_at, created_at)
			VALUES (p_ids[i], v_s, v_d, p_amounts[i], p_expires[i], p_now)
			ON CONFLICT (id) DO NOTHING;
			IF NOT FOUND THEN
				o_status := 'conflict';
				RETURN NEXT;
				CONTINUE;
			END IF;
			UPDATE budgets b SET reserved = b.reserved + p_amounts[i], updated_at = p_now
			FROM unnest(v_s, v_d) AS u(s, d) WHERE b.scope = u.s AND b.id = u.d;
			GET DIAGNOSTICS v_rows = ROW_COUNT;
			IF v_rows < cardinality(v_s) THEN -- budgets without a row get one, with no limit
				INSERT INTO budgets AS b (scope, id, reserved, updated_at)
				SELECT u.s, u.d, p_amounts[i], p_now FROM unnest(v_s, v_d) AS u(s, d)
				WHERE NOT EXISTS (SELECT 1 FROM budgets x WHERE x.scope = u.s AND x.id = u.d)
				ON CONFLICT (scope, id) DO UPDATE SET reserved = b.reserved + excluded.reserved, updated_at = excluded.updated_at;
			END IF;
		END IF;
		RETURN NEXT;
	END LOOP;
END
$$;
