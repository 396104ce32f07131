ALTER TABLE `job_items` ADD `finish_no` integer;--> statement-breakpoint
CREATE INDEX `job_items_finish_idx` ON `job_items` (`job_id`,`finish_no`);--> statement-breakpoint
ALTER TABLE `jobs` ADD `estimate` text;--> statement-breakpoint
-- Items finished before this migration get their finish order from (finished_at, seq).
UPDATE `job_items` SET `finish_no` = r.n FROM (SELECT `job_id` AS j, `seq` AS s, ROW_NUMBER() OVER (PARTITION BY `job_id` ORDER BY `finished_at`, `seq`) AS n FROM `job_items` WHERE `status` != 'pending') AS r WHERE `job_items`.`job_id` = r.j AND `job_items`.`seq` = r.s;
