/* Toolchain check: parallel HDF5 over MPI-IO.
 *
 * Every rank opens one file through the MPI-IO driver (H5Pset_fapl_mpio), the ranks create
 * a dataset of n_ranks * N doubles together and each writes its own slab with a collective
 * transfer (H5FD_MPIO_COLLECTIVE). Rank 0 then re-reads the whole dataset and checks every
 * value. Exit 0 only if all of that worked on every rank.
 *
 *   mpiexec -n 2 check_mpi_hdf5 [FILE.h5]
 */
#include <hdf5.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>

#define N 1000

#define CHECK(expr)                                                                   \
    do {                                                                              \
        if ((expr) < 0) {                                                             \
            fprintf(stderr, "rank %d: %s failed (%s:%d)\n", rank, #expr, __FILE__,    \
                    __LINE__);                                                        \
            MPI_Abort(MPI_COMM_WORLD, 1);                                             \
        }                                                                             \
    } while (0)

int main(int argc, char **argv)
{
    int rank = 0, size = 1;
    const char *path = argc > 1 ? argv[1] : "check_mpi_hdf5.h5";

    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);

#ifndef H5_HAVE_PARALLEL
    if (rank == 0) fprintf(stderr, "HDF5 was built without parallel support\n");
    MPI_Abort(MPI_COMM_WORLD, 1);
    return 1;
#else
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    CHECK(fapl);
    CHECK(H5Pset_fapl_mpio(fapl, MPI_COMM_WORLD, MPI_INFO_NULL));
    hid_t file = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    CHECK(file);

    hsize_t dims[1] = {(hsize_t)size * N};
    hid_t filespace = H5Screate_simple(1, dims, NULL);
    CHECK(filespace);
    hid_t dset = H5Dcreate2(file, "values", H5T_NATIVE_DOUBLE, filespace, H5P_DEFAULT,
                            H5P_DEFAULT, H5P_DEFAULT);
    CHECK(dset);

    double *buf = malloc(N * sizeof(double));
    for (int i = 0; i < N; i++) buf[i] = rank * N + i;
    hsize_t start[1] = {(hsize_t)rank * N}, count[1] = {N};
    CHECK(H5Sselect_hyperslab(filespace, H5S_SELECT_SET, start, NULL, count, NULL));
    hid_t memspace = H5Screate_simple(1, count, NULL);
    CHECK(memspace);

    hid_t dxpl = H5Pcreate(H5P_DATASET_XFER);
    CHECK(dxpl);
    CHECK(H5Pset_dxpl_mpio(dxpl, H5FD_MPIO_COLLECTIVE));
    CHECK(H5Dwrite(dset, H5T_NATIVE_DOUBLE, memspace, filespace, dxpl, buf));

    H5Pclose(dxpl);
    H5Sclose(memspace);
    H5Sclose(filespace);
    H5Dclose(dset);
    CHECK(H5Fclose(file));
    H5Pclose(fapl);
    free(buf);

    /* Read back serially on rank 0 and check every value. */
    int bad = 0;
    if (rank == 0) {
        hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
        CHECK(f);
        hid_t d = H5Dopen2(f, "values", H5P_DEFAULT);
        CHECK(d);
        double *all = malloc((size_t)size * N * sizeof(double));
        CHECK(H5Dread(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, all));
        for (long i = 0; i < (long)size * N; i++)
            if (all[i] != (double)i) bad++;
        free(all);
        H5Dclose(d);
        H5Fclose(f);
        unsigned maj, min, rel;
        H5get_libversion(&maj, &min, &rel);
        printf("parallel HDF5 %u.%u.%u: %d ranks wrote %d values collectively, %s\n", maj,
               min, rel, size, size * N, bad ? "MISMATCH" : "all correct");
    }
    MPI_Bcast(&bad, 1, MPI_INT, 0, MPI_COMM_WORLD);
    MPI_Finalize();
    return bad ? 1 : 0;
#endif
}
