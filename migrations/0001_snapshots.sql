CREATE TABLE `snapshots` (
	`id` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
	`deployment_id` text NOT NULL,
	`engine` text NOT NULL,
	`engine_build` text NOT NULL,
	`sha256` text NOT NULL,
	`bytes` integer NOT NULL,
	`memory_bytes` integer NOT NULL,
	`created_at` integer NOT NULL,
	FOREIGN KEY (`deployment_id`) REFERENCES `deployments`(`id`) ON UPDATE no action ON DELETE no action
);
--> statement-breakpoint
CREATE UNIQUE INDEX `snapshots_deployment_build_uq` ON `snapshots` (`deployment_id`,`engine_build`);