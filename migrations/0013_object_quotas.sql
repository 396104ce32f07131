CREATE TABLE `object_usage` (
	`account_id` text PRIMARY KEY NOT NULL,
	`bytes` integer DEFAULT 0 NOT NULL,
	`objects` integer DEFAULT 0 NOT NULL,
	`quota_bytes` integer,
	`quota_objects` integer,
	FOREIGN KEY (`account_id`) REFERENCES `accounts`(`id`) ON UPDATE no action ON DELETE no action
);
--> statement-breakpoint
INSERT INTO `object_usage` (`account_id`, `bytes`, `objects`) SELECT `buckets`.`account_id`, COALESCE(SUM(`objects`.`size`), 0), COUNT(*) FROM `objects` JOIN `buckets` ON `buckets`.`id` = `objects`.`bucket_id` GROUP BY `buckets`.`account_id`;
