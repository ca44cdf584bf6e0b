-- Search whose cost does not grow with the base (knowledge.py, _SEARCH; docs/knowledge-base.md).
--
-- `head` holds the title's and the tags' words alone: a small vector beside each document, indexed
-- on its own, from which the search picks its candidates cheaply. `source_hash` is the hash of the
-- file a folder document came from, so a re-load skips unchanged files without parsing them.
-- The lexicon (`knowledge_lexemes`) and the document count (`knowledge_stats`) follow every change
-- through statement-level triggers, by difference: a change costs what it changes, not the base.

CREATE FUNCTION knowledge_head_vector(title text, tags text[]) RETURNS tsvector
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT setweight(to_tsvector('russian'::regconfig, coalesce(title, '')), 'A')
        || setweight(to_tsvector('russian'::regconfig, coalesce(array_to_string(tags, ' '), '')), 'B')
$$;

ALTER TABLE knowledge_documents
    ADD COLUMN head tsvector GENERATED ALWAYS AS (knowledge_head_vector(title, tags)) STORED,
    ADD COLUMN source_hash text;
CREATE INDEX knowledge_documents_head ON knowledge_documents USING gin (head);

CREATE TABLE knowledge_stats (documents bigint NOT NULL);
INSERT INTO knowledge_stats SELECT count(*) FROM knowledge_documents;

-- Add the lexemes of the added documents, take away those of the removed ones (an update is both).
-- Only stems made of letters, digits and inner hyphens are kept (knowledge.py, _LEXEME).
CREATE FUNCTION knowledge_count(added text[], removed text[], counted bigint) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    WITH change AS (
        SELECT lexeme, sum(delta) AS delta
        FROM (SELECT unnest(added) AS lexeme, 1 AS delta UNION ALL SELECT unnest(removed), -1) AS c
        WHERE lexeme ~ '^[0-9a-zа-яё]+(-[0-9a-zа-яё]+)*$'
        GROUP BY lexeme HAVING sum(delta) <> 0
    ),
    updated AS (
        UPDATE knowledge_lexemes l SET documents = l.documents + c.delta FROM change c WHERE l.lexeme = c.lexeme RETURNING l.lexeme
    )
    -- Trigrams only for stems the base did not have: computing them is the costly part.
    INSERT INTO knowledge_lexemes (lexeme, documents, trigrams)
    SELECT lexeme, delta, knowledge_trigrams(lexeme) FROM change
    WHERE delta > 0 AND lexeme NOT IN (SELECT lexeme FROM updated);
    DELETE FROM knowledge_lexemes WHERE documents <= 0;
    UPDATE knowledge_stats SET documents = knowledge_stats.documents + counted;
END
$$;
CREATE INDEX knowledge_lexemes_unused ON knowledge_lexemes (lexeme) WHERE documents <= 0;

CREATE FUNCTION knowledge_count_changes() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- Each branch names only the transition tables its event has.
    IF TG_OP = 'INSERT' THEN
        PERFORM knowledge_count(ARRAY(SELECT unnest(tsvector_to_array(search)) FROM added), '{}', (SELECT count(*) FROM added));
    ELSIF TG_OP = 'DELETE' THEN
        PERFORM knowledge_count('{}', ARRAY(SELECT unnest(tsvector_to_array(search)) FROM removed), -(SELECT count(*) FROM removed));
    ELSE
        PERFORM knowledge_count(ARRAY(SELECT unnest(tsvector_to_array(search)) FROM added),
                                ARRAY(SELECT unnest(tsvector_to_array(search)) FROM removed), 0);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER knowledge_count_inserted AFTER INSERT ON knowledge_documents
    REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION knowledge_count_changes();
CREATE TRIGGER knowledge_count_updated AFTER UPDATE ON knowledge_documents
    REFERENCING OLD TABLE AS removed NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION knowledge_count_changes();
CREATE TRIGGER knowledge_count_deleted AFTER DELETE ON knowledge_documents
    REFERENCING OLD TABLE AS removed FOR EACH STATEMENT EXECUTE FUNCTION knowledge_count_changes();
