-- What a folder load saw of each file it read: its size and modification time when its bytes had
-- the hash `source_hash`. A re-load takes a file whose size and mtime are as recorded here, and
-- whose document still has that hash, as unchanged without reading it (documents.py, FolderScan;
-- git's index does the same), so re-loading an unchanged folder costs a stat per file.
--
-- A table of its own rather than columns of knowledge_documents: a touched but identical file (a
-- fresh checkout touches them all) then costs the update of a narrow row, where an update of a
-- document rewrites its index entries and runs the lexicon trigger. Measured on the 100,000
-- documents of bench-kb: 69 s to update them all (24 s without the trigger), 1 s to record them here.
CREATE TABLE knowledge_files (
    path        text PRIMARY KEY,   -- relative to the folder, as knowledge_documents.path
    source_hash text NOT NULL,
    size        bigint NOT NULL,
    mtime_ns    bigint NOT NULL
);
