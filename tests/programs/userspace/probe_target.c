// SPDX-License-Identifier: Apache-2.0
/* The user-space process the uprobe tests probe (built with gcc by the
 * probe_target fixture). It reads commands on stdin, one per line, and
 * answers each with the sum of what the calls returned:
 *   "f N"  call bpfman_probe_target(i) for i in 0..N-1 (returns 2i+1)
 *   "l N"  call bpfman_lib_target(i) from libbpfmantest.so (returns 3i+2)
 *   "p N"  call libc's getpid() N times
 * It prints "ready" first; EOF on stdin ends it. */
#include <stdio.h>
#include <unistd.h>

int bpfman_lib_target(int x);

/* noinline and an empty asm: the call must stay a real call to a real symbol. */
__attribute__((noinline)) int bpfman_probe_target(int x)
{
	__asm__ volatile("" ::: "memory");
	return 2 * x + 1;
}

/* Through a volatile pointer, so the compiler cannot drop or merge calls. */
static pid_t (*volatile get_pid)(void) = getpid;

int main(void)
{
	char line[64], what;
	int n;

	setvbuf(stdout, NULL, _IONBF, 0);
	printf("ready\n");
	while (fgets(line, sizeof(line), stdin)) {
		long sum = 0;

		if (sscanf(line, "%c %d", &what, &n) != 2)
			continue;
		for (int i = 0; i < n; i++) {
			if (what == 'f')
				sum += bpfman_probe_target(i);
			else if (what == 'l')
				sum += bpfman_lib_target(i);
			else if (what == 'p')
				sum += get_pid() > 0;
		}
		printf("%ld\n", sum);
	}
	return 0;
}
