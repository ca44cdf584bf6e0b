-- Feedback on an answer (issue 15.2): one rating per turn, which its user may change.
ALTER TABLE turns ADD COLUMN feedback text CHECK (feedback IN ('up', 'down'));
ALTER TABLE turns ADD COLUMN feedback_at timestamptz;
-- Feedback by e-mail ("1" or "2" in reply to our answer) names the answer by its Message-ID.
CREATE INDEX action_results_by_external_id ON action_results (external_id) WHERE external_id IS NOT NULL;

-- The operator who took the conversation over (issue 15.1): the bot answers nothing there until
-- it is handed back (NULL again).
ALTER TABLE conversations ADD COLUMN taken_by text;
-- A turn an operator wrote (request empty: nobody asked, the operator answered in the thread).
ALTER TABLE turns ADD COLUMN operator text;
