CREATE TABLE `domains` (
	`id` text PRIMARY KEY NOT NULL,
	`account_id` text NOT NULL,
	`host` text NOT NULL,
	`status` text NOT NULL,
	`error` text,
	`cert_not_after` integer,
	`renew_at` integer,
	`created_at` integer NOT NULL,
	`updated_at` integer NOT NULL,
	FOREIGN KEY (`account_id`) REFERENCES `accounts`(`id`) ON UPDATE no action ON DELETE no action
);
--> statement-breakpoint
CREATE UNIQUE INDEX `domains_account_host_uq` ON `domains` (`account_id`,`host`);--> statement-breakpoint
CREATE INDEX `domains_host_idx` ON `domains` (`host`);