// SPDX-License-Identifier: Apache-2.0
/* libbpfmantest.so: a shared library for the uprobe tests' library and
 * container targets (see probe_target.c). */
__attribute__((noinline)) int bpfman_lib_target(int x)
{
	__asm__ volatile("" ::: "memory");
	return 3 * x + 2;
}
