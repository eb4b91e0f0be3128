BEGIN TRANSACTION;
CREATE TABLE pb_runs (
	run_id VARCHAR(200) NOT NULL, 
	task_id VARCHAR(200) NOT NULL, 
	task_title VARCHAR(500), 
	task_description TEXT, 
	agent VARCHAR(200) NOT NULL, 
	model VARCHAR(200), 
	type VARCHAR(20) NOT NULL, 
	method VARCHAR(200) NOT NULL, 
	reference BOOLEAN NOT NULL, 
	profile VARCHAR(100) NOT NULL, 
	max_steps INTEGER NOT NULL, 
	max_tests INTEGER NOT NULL, 
	codebase_version VARCHAR(200) NOT NULL, 
	dataset_source VARCHAR(200) NOT NULL, 
	hardware JSON NOT NULL, 
	library_versions JSON NOT NULL, 
	git_commit VARCHAR(100), 
	started_at DATETIME NOT NULL, 
	finished_at DATETIME, 
	status VARCHAR(20) NOT NULL, 
	result_status VARCHAR(20) NOT NULL, 
	final_test_number INTEGER, 
	final_status VARCHAR(20), 
	final_reason TEXT, 
	regions JSON NOT NULL, 
	diff TEXT NOT NULL, 
	transcript JSON, 
	transcript_ref TEXT, 
	metric_specs TEXT NOT NULL, 
	results JSON NOT NULL, 
	content_hash VARCHAR(64) NOT NULL, 
	recorded_at DATETIME NOT NULL, 
	PRIMARY KEY (run_id)
);
INSERT INTO "pb_runs" VALUES('old-r1','task-a','Task A',NULL,'baseline:wsd',NULL,'baseline','wsd',0,'tiny',20,3,'v1','offline','{"cpus": 2}','{"torch": "2.13.0"}','abc','2026-11-01 00:00:00.000000',NULL,'finished','ok',1,'ok',NULL,'{"get_lr": "def get_lr(...): ..."}','--- a
+++ b
','[{"role": "user", "content": "hi"}]',NULL,'[{"bound": 0.0, "direction": "lower", "hidden": false, "name": "val_loss", "primary": false, "setting": "gpt-tiny", "weight": 1.0}]','{"val_loss_gpt-tiny": [2.26, 2.2609999999999997]}','7035beac1a6214b673963db07bb949353d378fe87ec7deab73932e08a5f67f5e','2026-11-26 17:56:44.147474');
CREATE TABLE pb_schema_version (
	version INTEGER NOT NULL, 
	description VARCHAR(200) NOT NULL, 
	applied_at DATETIME NOT NULL, 
	PRIMARY KEY (version)
);
INSERT INTO "pb_schema_version" VALUES(1,'initial schema: tasks, runs, tests','2026-11-26 17:56:44.146129');
CREATE TABLE pb_tasks (
	task_id VARCHAR(200) NOT NULL, 
	title VARCHAR(500), 
	description TEXT, 
	updated_at DATETIME NOT NULL, 
	PRIMARY KEY (task_id)
);
INSERT INTO "pb_tasks" VALUES('task-a','Task A',NULL,'2026-11-26 17:56:44.147474');
CREATE TABLE pb_tests (
	id INTEGER NOT NULL, 
	run_id VARCHAR(200) NOT NULL, 
	is_final BOOLEAN NOT NULL, 
	number INTEGER NOT NULL, 
	setting VARCHAR(100) NOT NULL, 
	seed INTEGER NOT NULL, 
	status VARCHAR(20) NOT NULL, 
	reason TEXT, 
	metrics JSON NOT NULL, 
	elapsed_s FLOAT, 
	curve JSON NOT NULL, 
	PRIMARY KEY (id), 
	CONSTRAINT uq_pb_tests_result UNIQUE (run_id, is_final, number, setting, seed), 
	FOREIGN KEY(run_id) REFERENCES pb_runs (run_id) ON DELETE CASCADE
);
INSERT INTO "pb_tests" VALUES(1,'old-r1',0,1,'gpt-tiny',40,'ok',NULL,'{"val_loss_gpt-tiny": 2.26}',1.5,'[{"step": 0.0, "lr": 0.001, "train_loss": 10.0}, {"step": 10.0, "lr": 0.0005, "train_loss": 4.0}]');
INSERT INTO "pb_tests" VALUES(2,'old-r1',0,1,'gpt-tiny',41,'ok',NULL,'{"val_loss_gpt-tiny": 2.2609999999999997}',1.5,'[{"step": 0.0, "lr": 0.001, "train_loss": 10.0}, {"step": 10.0, "lr": 0.0005, "train_loss": 4.0}]');
INSERT INTO "pb_tests" VALUES(3,'old-r1',0,2,'gpt-tiny',40,'ok',NULL,'{"val_loss_gpt-tiny": 2.27}',1.5,'[{"step": 0.0, "lr": 0.001, "train_loss": 10.0}, {"step": 10.0, "lr": 0.0005, "train_loss": 4.0}]');
INSERT INTO "pb_tests" VALUES(4,'old-r1',0,2,'gpt-tiny',41,'ok',NULL,'{"val_loss_gpt-tiny": 2.271}',1.5,'[{"step": 0.0, "lr": 0.001, "train_loss": 10.0}, {"step": 10.0, "lr": 0.0005, "train_loss": 4.0}]');
INSERT INTO "pb_tests" VALUES(5,'old-r1',1,1,'gpt-tiny',40,'ok',NULL,'{"val_loss_gpt-tiny": 2.26}',1.5,'[{"step": 0.0, "lr": 0.001, "train_loss": 10.0}, {"step": 10.0, "lr": 0.0005, "train_loss": 4.0}]');
INSERT INTO "pb_tests" VALUES(6,'old-r1',1,1,'gpt-tiny',41,'ok',NULL,'{"val_loss_gpt-tiny": 2.2609999999999997}',1.5,'[{"step": 0.0, "lr": 0.001, "train_loss": 10.0}, {"step": 10.0, "lr": 0.0005, "train_loss": 4.0}]');
CREATE INDEX ix_pb_runs_task_profile ON pb_runs (task_id, profile);
CREATE INDEX ix_pb_runs_task_id ON pb_runs (task_id);
CREATE INDEX ix_pb_tests_run_id ON pb_tests (run_id);
COMMIT;
