/* SPDX-License-Identifier: MIT */
/*
 * dmaheap_shim.c - DMA heaps for a machine without them (trapd real-camera lane)
 *
 * picamera2 allocates its frame buffers from /dev/dma_heap/{vidbuf_cached,linux,cma}
 * and libcamera's DmaBufAllocator from /dev/dma_heap/{linux,cma,reserved,system}.
 * A VM kernel without DMA heaps has none of these. LD_PRELOADed, this shim:
 *
 *   - open()/openat() of /dev/dma_heap/<anything> returns a memfd standing for
 *     the heap (no file is created, no privilege needed);
 *   - DMA_HEAP_IOCTL_ALLOC on such a heap returns a new memfd of the asked size,
 *     which works as a dma-buf for everything user space does with one (mmap,
 *     pass to libcamera);
 *   - DMA_BUF_SET_NAME and DMA_BUF_IOCTL_SYNC on our memfds are no-ops returning 0;
 *   - everything else goes to the real functions.
 *
 * Our fds are told apart statelessly by the name the kernel shows for a memfd
 * in /proc/self/fd ("/memfd:trapd-dma-heap ..." and "/memfd:trapd-dma-buf ..."),
 * so dup()ed and inherited fds work too.
 *
 * Build: gcc -shared -fPIC -O2 -o libdmaheap_shim.so dmaheap_shim.c -ldl
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <linux/dma-buf.h>
#include <linux/dma-heap.h>

#define HEAP_PREFIX "/dev/dma_heap/"
#define HEAP_NAME "trapd-dma-heap"
#define BUF_NAME "trapd-dma-buf"

/* The set-name ioctls: the kernel defines the same number with different sizes. */
#ifndef DMA_BUF_SET_NAME_A
#define DMA_BUF_SET_NAME_A _IOW(DMA_BUF_BASE, 1, uint32_t)
#endif
#ifndef DMA_BUF_SET_NAME_B
#define DMA_BUF_SET_NAME_B _IOW(DMA_BUF_BASE, 1, uint64_t)
#endif

static int is_heap_path(const char *path)
{
	return path && strncmp(path, HEAP_PREFIX, strlen(HEAP_PREFIX)) == 0;
}

static int open_heap(int flags)
{
	return memfd_create(HEAP_NAME, (flags & O_CLOEXEC) ? MFD_CLOEXEC : 0);
}

/* 1 if fd is one of our memfds named `name`. */
static int is_our_fd(int fd, const char *name)
{
	char link[64], target[128];
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	ssize_t n = readlink(link, target, sizeof(target) - 1);
	if (n < 0)
		return 0;
	target[n] = '\0';
	char want[64];
	snprintf(want, sizeof(want), "/memfd:%s", name);
	return strncmp(target, want, strlen(want)) == 0;
}

static int heap_alloc(struct dma_heap_allocation_data *data)
{
	if (!data) {
		errno = EFAULT;
		return -1;
	}
	int fd = memfd_create(BUF_NAME, (data->fd_flags & O_CLOEXEC) ? MFD_CLOEXEC : 0);
	if (fd < 0)
		return -1;
	if (ftruncate(fd, (off_t)data->len) < 0) {
		int err = errno;
		close(fd);
		errno = err;
		return -1;
	}
	data->fd = (uint32_t)fd;
	return 0;
}

#define REAL(name, type) \
	static type real_##name; \
	if (!real_##name) \
		real_##name = (type)dlsym(RTLD_NEXT, #name)

/* mode is read only with O_CREAT or O_TMPFILE, as the real functions do. */
#define MODE_ARG(flags, mode) \
	mode_t mode = 0; \
	if ((flags) & (O_CREAT | O_TMPFILE)) { \
		va_list ap; \
		va_start(ap, flags); \
		mode = va_arg(ap, mode_t); \
		va_end(ap); \
	}

typedef int (*open_fn)(const char *, int, ...);
typedef int (*openat_fn)(int, const char *, int, ...);
typedef int (*ioctl_fn)(int, unsigned long, ...);

int open(const char *path, int flags, ...)
{
	MODE_ARG(flags, mode);
	if (is_heap_path(path))
		return open_heap(flags);
	REAL(open, open_fn);
	return real_open(path, flags, mode);
}

int open64(const char *path, int flags, ...)
{
	MODE_ARG(flags, mode);
	if (is_heap_path(path))
		return open_heap(flags);
	REAL(open64, open_fn);
	return real_open64(path, flags, mode);
}

int openat(int dirfd, const char *path, int flags, ...)
{
	MODE_ARG(flags, mode);
	if (is_heap_path(path))
		return open_heap(flags);
	REAL(openat, openat_fn);
	return real_openat(dirfd, path, flags, mode);
}

int openat64(int dirfd, const char *path, int flags, ...)
{
	MODE_ARG(flags, mode);
	if (is_heap_path(path))
		return open_heap(flags);
	REAL(openat64, openat_fn);
	return real_openat64(dirfd, path, flags, mode);
}

/* The _FORTIFY_SOURCE entry points (no mode argument). */
int __open_2(const char *path, int flags)
{
	return open(path, flags);
}

int __open64_2(const char *path, int flags)
{
	return open64(path, flags);
}

int __openat_2(int dirfd, const char *path, int flags)
{
	return openat(dirfd, path, flags);
}

int __openat64_2(int dirfd, const char *path, int flags)
{
	return openat64(dirfd, path, flags);
}

int ioctl(int fd, unsigned long request, ...)
{
	va_list ap;
	va_start(ap, request);
	void *arg = va_arg(ap, void *);
	va_end(ap);

	switch (request) {
	case DMA_HEAP_IOCTL_ALLOC:
		if (is_our_fd(fd, HEAP_NAME))
			return heap_alloc((struct dma_heap_allocation_data *)arg);
		break;
	case DMA_BUF_SET_NAME_A:
	case DMA_BUF_SET_NAME_B:
	case DMA_BUF_IOCTL_SYNC:
		if (is_our_fd(fd, BUF_NAME))
			return 0;
		break;
	default:
		break;
	}

	REAL(ioctl, ioctl_fn);
	return real_ioctl(fd, request, arg);
}
